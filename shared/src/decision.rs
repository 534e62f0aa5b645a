//! Routing a command to its aggregate's decider, with the context it needs read from the model.

use crate::account::{self, AccountState};
use crate::command::{Command, Target};
use crate::error::DomainError;
use crate::event::Event;
use crate::model::RecordRef;
use crate::read_model::{AccountEntry, ReadModel, RecordEntry};
use crate::record::{self, Context};
use crate::store::{Expected, StreamId};

/// What deciding a command against the current model produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The stream the command belongs to; `None` for a workflow command without record (R17).
    pub stream: Option<StreamId>,
    /// The version the stream must still be at for the events to be valid.
    pub expected: Expected,
    /// The events to append; empty when the command changes nothing.
    pub events: Vec<Event>,
}

/// Decides `cmd` against `model`. Pure: the same model and command give the same decision.
pub fn decide(model: &ReadModel, cmd: &Command) -> Result<Decision, DomainError> {
    static EMPTY_ACCOUNT: std::sync::LazyLock<AccountEntry> =
        std::sync::LazyLock::new(AccountEntry::default);
    static EMPTY_RECORD: std::sync::LazyLock<RecordEntry> =
        std::sync::LazyLock::new(RecordEntry::default);

    let entry = model.account(&cmd.account).unwrap_or(&EMPTY_ACCOUNT);
    match cmd.body.target() {
        Target::Nothing => Ok(Decision {
            stream: None,
            expected: Expected::NoStream,
            events: Vec::new(),
        }),
        Target::Account => {
            let state: &AccountState = &entry.state;
            let events = account::decide(cmd, state)?;
            Ok(Decision {
                stream: Some(StreamId::account(cmd.account.clone())),
                expected: Expected::from_version(entry.version),
                events,
            })
        }
        Target::Record(record) => {
            let rec = entry.records.get(&record).unwrap_or(&EMPTY_RECORD);
            let contact = record::contact_needed(&cmd.body, &rec.state)
                .and_then(|c| entry.records.get(&RecordRef::Contact(c)))
                .map(|c| &c.state);
            let ctx = Context {
                account: &entry.state,
                contact,
            };
            let events = record::decide(cmd, &record, &rec.state, &ctx)?;
            Ok(Decision {
                stream: Some(StreamId::record(cmd.account.clone(), record)),
                expected: Expected::from_version(rec.version),
                events,
            })
        }
    }
}
