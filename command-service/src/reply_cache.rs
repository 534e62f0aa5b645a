//! Replies to commands that appended nothing (rejections, no-ops), kept so that a retry with the
//! same command id gets the first reply again (R24) even if the state has changed since.
//! Commands that appended are recognised from the history itself, forever; these are kept in
//! memory, per instance, for the most recent `capacity` commands.

use std::collections::{HashMap, VecDeque};

use followers_shared::ids::CommandId;
use followers_shared::wire::CommandReply;

#[derive(Debug)]
pub struct ReplyCache {
    capacity: usize,
    replies: HashMap<CommandId, CommandReply>,
    order: VecDeque<CommandId>,
}

impl ReplyCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            replies: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, id: &CommandId) -> Option<&CommandReply> {
        self.replies.get(id)
    }

    pub fn insert(&mut self, id: CommandId, reply: CommandReply) {
        if self.capacity == 0 || self.replies.contains_key(&id) {
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        self.order.push_back(id);
        self.replies.insert(id, reply);
    }
}
