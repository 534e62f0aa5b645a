//! Commands: shared's payload structs as requests, their replies, and the builder that sends one.

use std::future::{Future, IntoFuture};
use std::ops::Deref;
use std::pin::Pin;

use followers_shared::command::{
    AccountCommand, AddFollowers, ChangeFollowerUntil, ChangeMemberDataScope, ChangeMemberRole,
    ChangeOwner, ChangeSettings, CreateContact, CreateOpportunity, DeactivateMember, OpenAccount,
    ReactivateMember, RecordCommand, RegisterMember, RemoveFollowers,
};
use followers_shared::event::Event;
use followers_shared::ids::{AccountId, CommandId};
use followers_shared::model::Actor;
use followers_shared::record::without_record;
use followers_shared::store::Position;
use followers_shared::wire::{CommandReply, ErrorBody, Outcome, subject};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::retry::{Replied, Retry, exchange};
use crate::{Account, Error};

/// A command's own fields: one of shared's payload structs ([`AddFollowers`], ...), whose
/// fields are validated types, so a payload that exists is one the service can read.
pub trait CommandPayload: Send + Sync + 'static {
    /// The command's name: the last token of its subject.
    const NAME: &'static str;

    /// The payload's fields as the request's JSON object has them (docs/protocol.md).
    fn fields(&self) -> Map<String, Value>;

    /// A rule the service checks while reading the request, checked before sending: a
    /// follower command without a record is only a workflow's (R17).
    fn readable_from(&self, actor: &Actor) -> Result<(), ErrorBody> {
        let _ = actor;
        Ok(())
    }
}

/// Implements [`CommandPayload`] for a payload whose wire fields are its own fields.
macro_rules! payloads {
    ($($payload:ident => $name:literal { $($field:ident),* },)*) => {$(
        impl CommandPayload for $payload {
            const NAME: &'static str = $name;

            fn fields(&self) -> Map<String, Value> {
                let mut fields = Map::new();
                $(fields.insert(stringify!($field).to_owned(), json!(self.$field));)*
                fields
            }
        }
    )*};
}

payloads! {
    OpenAccount => "open_account" { name, settings },
    RegisterMember => "register_member" { user, name, email, role, data_scope },
    ChangeMemberRole => "change_member_role" { user, role },
    ChangeMemberDataScope => "change_member_data_scope" { user, data_scope },
    DeactivateMember => "deactivate_member" { user },
    ReactivateMember => "reactivate_member" { user },
    CreateContact => "create_contact" { contact, owner, followers },
    CreateOpportunity => "create_opportunity" { opportunity, contact, owner, followers },
    ChangeOwner => "change_owner" { record, owner },
    ChangeFollowerUntil => "change_follower_until" { record, user, until },
}

/// `change_settings`: on the wire, the settings' own fields.
impl CommandPayload for ChangeSettings {
    const NAME: &'static str = "change_settings";

    fn fields(&self) -> Map<String, Value> {
        match json!(self.change) {
            Value::Object(fields) => fields,
            _ => Map::new(),
        }
    }
}

/// Implements [`CommandPayload`] for a follower command, which needs a record unless a
/// workflow sends it (R17).
macro_rules! follower_payloads {
    ($($payload:ident => $name:literal,)*) => {$(
        impl CommandPayload for $payload {
            const NAME: &'static str = $name;

            fn fields(&self) -> Map<String, Value> {
                let mut fields = Map::new();
                fields.insert("record".to_owned(), json!(self.record));
                fields.insert("users".to_owned(), json!(self.users));
                self.extra_fields(&mut fields);
                fields
            }

            fn readable_from(&self, actor: &Actor) -> Result<(), ErrorBody> {
                without_record(actor, &RecordCommand::from(self.clone())).map_err(|e| ErrorBody::from(&e))
            }
        }
    )*};
}

follower_payloads! {
    AddFollowers => "add_followers",
    RemoveFollowers => "remove_followers",
}

/// The fields a follower command has beyond `record` and `users`.
trait ExtraFields {
    fn extra_fields(&self, fields: &mut Map<String, Value>);
}

/// `until` (issue 17.4), sent only when some user has one.
impl ExtraFields for AddFollowers {
    fn extra_fields(&self, fields: &mut Map<String, Value>) {
        if !self.until.is_empty() {
            fields.insert("until".to_owned(), json!(self.until));
        }
    }
}

impl ExtraFields for RemoveFollowers {
    fn extra_fields(&self, _: &mut Map<String, Value>) {}
}

/// Every command name this client can send, to check against the service's table.
pub const NAMES: [&str; 13] = [
    OpenAccount::NAME,
    RegisterMember::NAME,
    ChangeMemberRole::NAME,
    ChangeMemberDataScope::NAME,
    DeactivateMember::NAME,
    ReactivateMember::NAME,
    ChangeSettings::NAME,
    CreateContact::NAME,
    CreateOpportunity::NAME,
    ChangeOwner::NAME,
    AddFollowers::NAME,
    RemoveFollowers::NAME,
    ChangeFollowerUntil::NAME,
];

// The service's table has as many commands as this client: a new one fails to compile here.
const _: () = assert!(AccountCommand::NAMES.len() + RecordCommand::NAMES.len() == NAMES.len());

/// The service's reply to a command it carried out (`ok: true`), and the account it was for:
/// [`crate::Client::after`] and [`Account::after`] read its position for read-your-writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    account: AccountId,
    reply: CommandReply,
    attempts: u32,
}

impl Reply {
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The commit's position (for `unchanged` and `no_record`, the position it was decided at):
    /// a query given it answers from a model that shows the command.
    pub fn position(&self) -> Position {
        self.reply.position.unwrap_or_default()
    }

    pub fn outcome(&self) -> Outcome {
        self.reply.outcome.unwrap_or(Outcome::Unchanged)
    }

    pub fn command_id(&self) -> Option<CommandId> {
        self.reply.command_id
    }

    /// Whether this repeats the reply to an earlier attempt with the same command id (R24).
    pub fn replayed(&self) -> bool {
        self.reply.replayed
    }

    /// Whether this answers a dry run: nothing was appended, the events are those the command
    /// would append.
    pub fn dry_run(&self) -> bool {
        self.reply.dry_run
    }

    /// How many attempts the client made to get this reply: 1 unless it retried.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn events(&self) -> &[Event] {
        &self.reply.events
    }

    /// The reply as the wire has it.
    pub fn into_inner(self) -> CommandReply {
        self.reply
    }
}

impl Deref for Reply {
    type Target = CommandReply;

    fn deref(&self) -> &CommandReply {
        &self.reply
    }
}

impl Replied for CommandReply {
    fn ok(&self) -> bool {
        self.ok
    }

    fn failure(&self) -> Option<&ErrorBody> {
        self.error.as_ref()
    }
}

/// One command, ready to send: `.await` it, or set its id, correlation or retry policy first.
/// Its id is chosen once, when it is built, and every attempt carries it, so the service applies
/// it at most once however often it is tried (R24).
#[derive(Debug, Clone)]
#[must_use = "a command is sent when awaited"]
pub struct CommandRequest<P> {
    account: Account,
    actor: Actor,
    payload: P,
    command_id: CommandId,
    correlation: Option<Uuid>,
    retry: Retry,
    dry_run: bool,
}

impl<P: CommandPayload> CommandRequest<P> {
    pub(crate) fn new(account: Account, actor: Actor, payload: P) -> Self {
        let retry = account.client.retry;
        Self {
            account,
            actor,
            payload,
            command_id: CommandId::new(),
            correlation: None,
            retry,
            dry_run: false,
        }
    }

    /// The command's id: a fresh UUID v7 unless set. Set it to send again a command whose
    /// reply was lost (e.g. after [`Error::GaveUp`]): the service replies as it did the first
    /// time, with `replayed`.
    pub fn command_id(mut self, id: CommandId) -> Self {
        self.command_id = id;
        self
    }

    /// The id the command's events carry as their correlation (the command id when unset).
    pub fn correlation(mut self, id: Uuid) -> Self {
        self.correlation = Some(id);
        self
    }

    /// Sends it as a dry run: the service decides it as for real and replies with the events
    /// it would append (and, for some commands, the access changes it would cause), but appends
    /// nothing and does not remember the command id (docs/protocol.md, section 3.17).
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// This command's retry policy instead of the client's.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The id every attempt carries.
    pub fn id(&self) -> CommandId {
        self.command_id
    }

    /// The request's JSON body.
    pub fn body(&self) -> Result<Vec<u8>, Error> {
        let mut fields = self.payload.fields();
        fields.insert("command_id".to_owned(), json!(self.command_id));
        fields.insert("actor".to_owned(), json!(self.actor));
        if let Some(c) = self.correlation {
            fields.insert("correlation_id".to_owned(), json!(c));
        }
        if self.dry_run {
            fields.insert("dry_run".to_owned(), json!(true));
        }
        serde_json::to_vec(&fields).map_err(Error::Encode)
    }

    /// Sends the command, trying again under the policy; `Ok` is a command carried out.
    pub async fn send(self) -> Result<Reply, Error> {
        let id = Some(self.command_id);
        self.payload
            .readable_from(&self.actor)
            .map_err(|e| Error::refused(e, id))?;
        let client = &self.account.client;
        let subject = subject::command(&client.prefix, self.account.id().as_str(), P::NAME);
        let body = self.body()?.into();
        let (reply, attempts): (CommandReply, _) =
            exchange(&client.nats, &self.retry, &subject, body, id).await?;
        if reply.command_id != id {
            return Err(Error::UnexpectedReply {
                what: format!(
                    "the reply is for command {:?}, not {:?}",
                    reply.command_id, id
                ),
                source: None,
            });
        }
        Ok(Reply {
            account: self.account.id().clone(),
            reply,
            attempts,
        })
    }
}

impl<P: CommandPayload> IntoFuture for CommandRequest<P> {
    type Output = Result<Reply, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use followers_shared::bounded::{SomeUsers, Text, Users};
    use followers_shared::command::{COMMAND_NAMES, CommandBody};
    use followers_shared::ids::{ContactId, OpportunityId, UserId, WorkflowId};
    use followers_shared::model::{DataScope, RecordRef, Role, SettingsChange};
    use followers_shared::wire::parse_command;

    use super::*;

    fn u(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    fn c1() -> RecordRef {
        RecordRef::Contact(ContactId::new("c-1").unwrap())
    }

    /// The body the client writes for `payload`, read back by the service's own parser.
    fn read_back<P: CommandPayload + Into<CommandBody> + Clone>(actor: Actor, payload: P) {
        let mut fields = payload.fields();
        let id = CommandId::new();
        fields.insert("command_id".to_owned(), json!(id));
        fields.insert("actor".to_owned(), json!(actor));
        let body = serde_json::to_vec(&fields).unwrap();
        let cmd = parse_command("acme", P::NAME, &body, chrono::Utc::now())
            .unwrap_or_else(|(_, e)| panic!("{}: {}", P::NAME, e.message));
        assert_eq!(cmd.body, payload.into(), "{}", P::NAME);
        assert_eq!(cmd.meta.command_id, id);
        assert_eq!(cmd.meta.actor, actor);
    }

    fn text(s: &str) -> Text {
        Text::new(s).unwrap()
    }

    fn coupled() -> SettingsChange {
        SettingsChange {
            allow_different_owners: Some(false),
            ..SettingsChange::default()
        }
    }

    #[test]
    fn the_accounts_payloads_are_read_back_as_sent() {
        let (name, s) = (text("Acme"), Actor::System);
        let settings = SettingsChange::default();
        read_back(
            s.clone(),
            OpenAccount {
                name: name.clone(),
                settings,
            },
        );
        let settings = coupled();
        read_back(s.clone(), OpenAccount { name, settings });
        let (role, data_scope) = (Role::Admin, DataScope::All);
        let (name, email) = (text("A"), text("a@x"));
        let user = u("a");
        read_back(
            s.clone(),
            RegisterMember {
                user,
                name,
                email,
                role,
                data_scope,
            },
        );
        let role = Role::User;
        read_back(s.clone(), ChangeMemberRole { user: u("a"), role });
        let data_scope = DataScope::OnlyAssigned;
        read_back(
            s.clone(),
            ChangeMemberDataScope {
                user: u("a"),
                data_scope,
            },
        );
        read_back(s.clone(), DeactivateMember { user: u("a") });
        read_back(s.clone(), ReactivateMember { user: u("a") });
        read_back(s.clone(), ChangeSettings { change: coupled() });
        let change = SettingsChange::default();
        read_back(s, ChangeSettings { change });
    }

    #[test]
    fn the_records_payloads_are_read_back_as_sent() {
        let s = Actor::System;
        let (contact_id, followers) = (ContactId::new("c-1").unwrap(), Users::default());
        let new = |owner, followers| CreateContact {
            contact: contact_id.clone(),
            owner,
            followers,
        };
        read_back(s.clone(), new(None, followers));
        read_back(
            s.clone(),
            new(Some(u("a")), Users::new(vec![u("a")]).unwrap()),
        );
        let opportunity = OpportunityId::new("o-1").unwrap();
        let followers = Users::new(vec![u("b")]).unwrap();
        let (contact, owner) = (contact_id.clone(), Some(u("a")));
        read_back(
            s.clone(),
            CreateOpportunity {
                opportunity,
                contact,
                owner,
                followers,
            },
        );
        let owner = Some(u("b"));
        read_back(
            s.clone(),
            ChangeOwner {
                record: c1(),
                owner,
            },
        );
        read_back(
            s.clone(),
            ChangeOwner {
                record: c1(),
                owner: None,
            },
        );
    }

    #[test]
    fn the_follower_payloads_are_read_back_as_sent() {
        let (s, users) = (Actor::System, SomeUsers::new(vec![u("a"), u("b")]).unwrap());
        let record = Some(c1());
        read_back(
            s.clone(),
            AddFollowers {
                until: Default::default(),
                record: record.clone(),
                users: users.clone(),
            },
        );
        read_back(
            s,
            RemoveFollowers {
                record,
                users: users.clone(),
            },
        );
        let w = Actor::Workflow {
            workflow: WorkflowId::new("w").unwrap(),
        };
        read_back(
            w.clone(),
            AddFollowers {
                until: Default::default(),
                record: None,
                users: users.clone(),
            },
        );
        read_back(
            w,
            RemoveFollowers {
                record: None,
                users,
            },
        );
    }

    #[test]
    fn the_client_names_every_command_the_service_reads() {
        let mut ours = NAMES.to_vec();
        let mut theirs = COMMAND_NAMES.to_vec();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_follower_command_without_record_is_only_a_workflows() {
        let users = SomeUsers::new(vec![u("a")]).unwrap();
        let add = AddFollowers {
            until: Default::default(),
            record: None,
            users,
        };
        let refused = add
            .readable_from(&Actor::User { user: u("a") })
            .unwrap_err();
        assert_eq!(
            refused.code,
            followers_shared::error::ErrorCode::MalformedRequest
        );
        let w = Actor::Workflow {
            workflow: WorkflowId::new("w").unwrap(),
        };
        assert!(add.readable_from(&w).is_ok());
    }
}
