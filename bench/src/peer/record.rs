//! The peer's aggregate: one CRM record (its owner and followers) as a team on cqrs-es would
//! write it, with the rules of row 1's mix that decide whether a command appends: a follower or
//! an owner must be a member of the account (R3), a record has at most [`MAX_FOLLOWERS`]
//! followers (R13), adding who already follows, removing who does not, or giving a record the
//! owner it has appends nothing (R12, R14) and is no error, as in our deciders. Who may do it is
//! not asked: the mix is sent by the account's admin, whom our rules let do everything.

use std::collections::HashSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use followers_shared::model::MAX_FOLLOWERS;
use serde::{Deserialize, Serialize};

/// The account's members, the services a record's commands are decided with.
pub type Members = HashSet<String>;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    created: bool,
    owner: Option<String>,
    followers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordCommand {
    Create {
        owner: String,
        followers: Vec<String>,
    },
    AddFollower {
        user: String,
    },
    RemoveFollower {
        user: String,
    },
    ChangeOwner {
        owner: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecordEvent {
    Created {
        owner: String,
        followers: Vec<String>,
    },
    FollowerAdded {
        user: String,
    },
    FollowerRemoved {
        user: String,
    },
    OwnerChanged {
        from: Option<String>,
        to: String,
    },
}

impl DomainEvent for RecordEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created { .. } => "created",
            Self::FollowerAdded { .. } => "follower_added",
            Self::FollowerRemoved { .. } => "follower_removed",
            Self::OwnerChanged { .. } => "owner_changed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Why a record refuses a command: nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the record exists already")]
    Exists,
    #[error("no such record")]
    NotFound,
    #[error("{0} is not a member of the account")]
    NotMember(String),
    #[error("the record has as many followers as it may have")]
    FollowerLimit,
}

impl PeerRecord {
    /// The events `command` appends to this record, or why it is refused.
    pub fn decide(
        &self,
        command: RecordCommand,
        members: &Members,
    ) -> Result<Vec<RecordEvent>, Refusal> {
        let member = |user: String| {
            if members.contains(&user) {
                Ok(user)
            } else {
                Err(Refusal::NotMember(user))
            }
        };
        match command {
            RecordCommand::Create { owner, followers } => {
                if self.created {
                    return Err(Refusal::Exists);
                }
                let followers = followers
                    .into_iter()
                    .map(member)
                    .collect::<Result<Vec<_>, _>>()?;
                if followers.len() > MAX_FOLLOWERS {
                    return Err(Refusal::FollowerLimit);
                }
                let owner = member(owner)?;
                Ok(vec![RecordEvent::Created { owner, followers }])
            }
            _ if !self.created => Err(Refusal::NotFound),
            RecordCommand::AddFollower { user } => {
                if self.followers.contains(&user) {
                    return Ok(Vec::new());
                }
                let user = member(user)?;
                if self.followers.len() >= MAX_FOLLOWERS {
                    return Err(Refusal::FollowerLimit);
                }
                Ok(vec![RecordEvent::FollowerAdded { user }])
            }
            RecordCommand::RemoveFollower { user } => Ok(if self.followers.contains(&user) {
                vec![RecordEvent::FollowerRemoved { user }]
            } else {
                Vec::new()
            }),
            RecordCommand::ChangeOwner { owner } => {
                if self.owner.as_ref() == Some(&owner) {
                    return Ok(Vec::new());
                }
                let to = member(owner)?;
                Ok(vec![RecordEvent::OwnerChanged {
                    from: self.owner.clone(),
                    to,
                }])
            }
        }
    }
}

impl Aggregate for PeerRecord {
    const TYPE: &'static str = "contact";
    type Command = RecordCommand;
    type Event = RecordEvent;
    type Error = Refusal;
    type Services = Members;

    async fn handle(
        &mut self,
        command: RecordCommand,
        members: &Members,
        sink: &EventSink<Self>,
    ) -> Result<(), Refusal> {
        for event in self.decide(command, members)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: RecordEvent) {
        match event {
            RecordEvent::Created { owner, followers } => {
                self.created = true;
                self.owner = Some(owner);
                self.followers = followers;
            }
            RecordEvent::FollowerAdded { user } => self.followers.push(user),
            RecordEvent::FollowerRemoved { user } => self.followers.retain(|f| *f != user),
            RecordEvent::OwnerChanged { to, .. } => self.owner = Some(to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Members {
        ["admin", "u-1", "u-2"].map(str::to_owned).into()
    }

    fn record(followers: &[&str]) -> PeerRecord {
        PeerRecord {
            created: true,
            owner: Some("u-1".to_owned()),
            followers: followers.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn add(user: &str) -> RecordCommand {
        RecordCommand::AddFollower {
            user: user.to_owned(),
        }
    }

    /// R12, R14, and the same owner again: decided, nothing appended, as in our deciders, so
    /// that the peer's share of appending commands is comparable with ours.
    #[test]
    fn what_changes_nothing_appends_nothing() {
        let r = record(&["u-2"]);
        assert_eq!(r.decide(add("u-2"), &members()), Ok(vec![]));
        let remove = RecordCommand::RemoveFollower {
            user: "u-1".to_owned(),
        };
        assert_eq!(r.decide(remove, &members()), Ok(vec![]));
        let owner = RecordCommand::ChangeOwner {
            owner: "u-1".to_owned(),
        };
        assert_eq!(r.decide(owner, &members()), Ok(vec![]));
    }

    /// R3, R13: only members follow, and at most MAX_FOLLOWERS of them.
    #[test]
    fn refuses_strangers_and_an_eleventh_follower() {
        let stranger = record(&[]).decide(add("u-9"), &members());
        assert_eq!(stranger, Err(Refusal::NotMember("u-9".to_owned())));
        let full = record(&["f"; MAX_FOLLOWERS]);
        assert_eq!(
            full.decide(add("u-2"), &members()),
            Err(Refusal::FollowerLimit)
        );
        let missing = PeerRecord::default().decide(add("u-2"), &members());
        assert_eq!(missing, Err(Refusal::NotFound));
    }

    #[test]
    fn applies_what_it_decided() {
        let mut r = record(&[]);
        for event in r.decide(add("u-2"), &members()).expect("added") {
            r.apply(event);
        }
        assert_eq!(r, record(&["u-2"]));
    }
}
