//! Results of commands that appended nothing (refusals, no-ops), kept so that a retry with the
//! same command id gets the first result again (R24) even if the state has changed since.
//! Commands that appended are recognised from the history itself, forever; these are kept in
//! memory, per instance, for the most recent `capacity` commands. The key is the account and the
//! command id: an id is the caller's idempotency key only within its account (R1).

use std::collections::{HashMap, VecDeque};

use followers_shared::ids::{AccountId, CommandId};

use crate::handler::Remembered;

/// A command's identity: its account and its id.
pub type CommandKey = (AccountId, CommandId);

#[derive(Debug)]
pub struct ReplyCache {
    capacity: usize,
    replies: HashMap<CommandKey, Remembered>,
    order: VecDeque<CommandKey>,
}

impl ReplyCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            replies: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: &CommandKey) -> Option<&Remembered> {
        self.replies.get(key)
    }

    pub fn insert(&mut self, key: CommandKey, first: Remembered) {
        if self.capacity == 0 || self.replies.contains_key(&key) {
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.replies.insert(key, first);
    }
}
