//! Deciding a command: [`decide_command`] routes it to its aggregate's decider (`account::decide_account`,
//! `record::decide_record`, `record::decide_sync`) with the state and the context it needs, read
//! from the model, and says which stream the events go to at which version.

use crate::account;
use crate::command::{Command, CommandBody, RecordCommand};
use crate::error::DomainError;
use crate::event::Event;
use crate::model::RecordRef;
use crate::read_model::{AccountEntry, ReadModel};
use crate::record::{self, Context, Input};
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

static EMPTY_ACCOUNT: std::sync::LazyLock<AccountEntry> =
    std::sync::LazyLock::new(AccountEntry::default);

/// Decides `cmd` against `model`. Pure: the same model and command give the same decision.
pub fn decide_command(model: &ReadModel, cmd: &Command) -> Result<Decision, DomainError> {
    let entry = model.account(&cmd.account).unwrap_or(&EMPTY_ACCOUNT);
    match &cmd.body {
        CommandBody::Account(c) => Ok(Decision {
            stream: Some(StreamId::account(cmd.account.clone())),
            expected: Expected::from_version(entry.version),
            events: account::decide_account(&cmd.account, &cmd.meta, c, &entry.state)?,
        }),
        CommandBody::Record(c) => match c.record() {
            Some(record) => on_record(entry, cmd, record, Some(c), |input| {
                record::decide_record(input, c)
            }),
            None => {
                // R17: a workflow without record context; anyone else is refused.
                record::without_record(&cmd.meta.actor, c)?;
                Ok(Decision {
                    stream: None,
                    expected: Expected::NoStream,
                    events: Vec::new(),
                })
            }
        },
        CommandBody::Sync(c) => on_record(entry, cmd, c.record().clone(), None, |input| {
            record::decide_sync(input, c)
        }),
    }
}

/// Decides a command on `record` with its state and its context.
fn on_record(
    entry: &AccountEntry,
    cmd: &Command,
    record: RecordRef,
    caller_command: Option<&RecordCommand>,
    decider: impl FnOnce(&Input<'_>) -> Result<Vec<Event>, DomainError>,
) -> Result<Decision, DomainError> {
    // The deciders read `RecordState`s: built here from the model's compact form.
    let rec = entry.records.get(&record);
    let state = rec.map(|r| r.state()).unwrap_or_default();
    let contact = record::contact_needed(caller_command, &state)
        .and_then(|c| entry.records.get(&RecordRef::Contact(c)))
        .map(|c| c.state());
    let ctx = Context {
        account: &entry.state,
        contact: contact.as_ref(),
    };
    let events = decider(&Input {
        account: &cmd.account,
        meta: &cmd.meta,
        record: &record,
        state: &state,
        ctx: &ctx,
    })?;
    Ok(Decision {
        stream: Some(StreamId::record(cmd.account.clone(), record)),
        expected: Expected::from_version(rec.and_then(|r| r.version)),
        events,
    })
}
