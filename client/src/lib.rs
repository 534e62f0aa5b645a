//! A typed client for followers: every command and query of docs/protocol.md, over NATS.
//!
//! - **Requests are shared's own types.** A command is one of the payload structs of
//!   [`followers_shared::command`] ([`AddFollowers`](followers_shared::command::AddFollowers),
//!   ...), a query one of the request structs of [`followers_shared::wire`]
//!   ([`CheckAccess`](followers_shared::wire::CheckAccess), ...). Their fields are validated
//!   newtypes ([`followers_shared::ids`], [`followers_shared::bounded`]), so the client cannot
//!   send a request the service would refuse as malformed.
//! - **Command ids** are UUID v7, chosen when the command is built and carried by every attempt,
//!   so a retried command is applied at most once (R24).
//! - **Retries** ([`Retry`]): timeouts, "no responders" and the replies `unavailable`,
//!   `store_unavailable` and `conflict` are tried again with backoff, within a bounded number of
//!   attempts and a bounded total time.
//! - **Read-your-writes**: [`Client::after`] (or [`Account::after`]) carries a command's
//!   position to the next query as its `min_position`.
//! - **Errors** ([`Error`]): a refusal is [`Error::Refused`] with its stable
//!   [`ErrorCode`](followers_shared::error::ErrorCode); anything else is a failure to get a reply.
//!
//! # Example
//!
//! (Each example runs against a nats-server and both services that `followers-doc-stack`
//! starts; it hands the example the server's URL.)
//!
//! ```
//! # followers_doc_stack::example(|url| async move {
//! use followers_client::{Client, system, user};
//! use followers_shared::access::Action;
//! use followers_shared::bounded::{SomeUsers, Text, Users};
//! use followers_shared::command::{AddFollowers, CreateContact, OpenAccount, RegisterMember};
//! use followers_shared::ids::{AccountId, ContactId, UserId};
//! use followers_shared::model::{DataScope, RecordRef, Role};
//!
//! let nats = async_nats::connect(url).await?;
//! let client = Client::new(nats);
//! let acme = client.account(AccountId::new("acme")?);
//!
//! acme.command(system(), OpenAccount { name: Text::new("Acme")?, settings: Default::default() })
//!     .await?;
//! for who in ["ada", "bob"] {
//!     let member = RegisterMember {
//!         user: UserId::new(who)?,
//!         name: Text::new(who)?,
//!         email: Text::new(format!("{who}@acme.example"))?,
//!         role: Role::User,
//!         data_scope: DataScope::OnlyAssigned,
//!     };
//!     acme.command(system(), member).await?;
//! }
//! let contact = ContactId::new("c-1")?;
//! let ada = UserId::new("ada")?;
//! let new_contact = CreateContact {
//!     contact: contact.clone(),
//!     owner: Some(ada.clone()),
//!     followers: Users::default(),
//! };
//! acme.command(user(&ada), new_contact).await?;
//! let record = RecordRef::Contact(contact);
//! let bob = UserId::new("bob")?;
//! let added = acme
//!     .command(user(&ada), AddFollowers {
//!         record: Some(record.clone()),
//!         users: SomeUsers::new(vec![bob.clone()])?,
//!         until: Default::default(), // or, per user, when the system removes them again
//!     })
//!     .await?;
//! assert_eq!(added.added.as_deref(), Some(&[bob.clone()][..]));
//!
//! // Read-your-writes: the answer reflects at least the command's commit.
//! let access = client.after(&added).check_access(&bob, Action::View, &record).await?;
//! assert!(access.allowed);
//! assert!(access.position >= added.position());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```
//!
//! # Refusals
//!
//! A refusal is [`Error::Refused`] with its stable code; other errors mean no considered reply.
//!
//! ```
//! # followers_doc_stack::example(|url| async move {
//! use followers_client::{Client, Error, system};
//! use followers_shared::bounded::Text;
//! use followers_shared::command::OpenAccount;
//! use followers_shared::error::ErrorCode;
//! use followers_shared::ids::AccountId;
//!
//! let client = Client::new(async_nats::connect(url).await?);
//! let acme = client.account(AccountId::new("acme")?);
//! let open = || OpenAccount { name: Text::new("Acme").unwrap(), settings: Default::default() };
//! acme.command(system(), open()).await?;
//! match acme.command(system(), open()).await {
//!     Err(Error::Refused { code: ErrorCode::AccountExists, message, .. }) => {
//!         println!("already open: {message}");
//!     }
//!     Err(e) if e.code().is_some() => panic!("refused otherwise: {e}"),
//!     Err(e) => return Err(e.into()), // no considered reply: see `Error`
//!     Ok(reply) => panic!("opened twice: {reply:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```
//!
//! # Sending a command again
//!
//! A command keeps its id across the client's own retries; to send it again later (after
//! [`Error::GaveUp`], or a restart), set the same id: the service answers as the first time.
//!
//! ```
//! # followers_doc_stack::example(|url| async move {
//! use followers_client::{Client, system};
//! use followers_shared::bounded::Text;
//! use followers_shared::command::OpenAccount;
//! use followers_shared::ids::AccountId;
//!
//! let acme = Client::new(async_nats::connect(url).await?).account(AccountId::new("acme")?);
//! let open = || OpenAccount { name: Text::new("Acme").unwrap(), settings: Default::default() };
//! let first = acme.command(system(), open());
//! let id = first.id();
//! let first = first.await?;
//! let again = acme.command(system(), open()).command_id(id).await?;
//! assert!(again.replayed());
//! assert_eq!(again.position(), first.position());
//! assert_eq!(again.attempts(), 1); // how many attempts this call took: no retry was needed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```
//!
//! # What is sent
//!
//! Building a request needs no server; its body is what docs/protocol.md shows.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use followers_client::{Client, workflow};
//! use followers_shared::bounded::SomeUsers;
//! use followers_shared::command::AddFollowers;
//! use followers_shared::ids::{AccountId, OpportunityId, UserId, WorkflowId};
//! use followers_shared::model::RecordRef;
//!
//! // A client that is never connected: `retry_on_initial_connect` returns at once.
//! let nats = async_nats::ConnectOptions::new().retry_on_initial_connect()
//!     .connect("nats://127.0.0.1:1").await?;
//! let acme = Client::new(nats).account(AccountId::new("acme")?);
//! let add = acme.command(workflow(&WorkflowId::new("big-deals")?), AddFollowers {
//!     record: Some(RecordRef::Opportunity(OpportunityId::new("o-7")?)),
//!     users: SomeUsers::new(vec![UserId::new("dana")?])?,
//!     until: Default::default(),
//! });
//! let body: serde_json::Value = serde_json::from_slice(&add.body()?)?;
//! assert_eq!(body["record"], serde_json::json!({"kind": "opportunity", "id": "o-7"}));
//! assert_eq!(body["users"], serde_json::json!(["dana"]));
//! assert_eq!(body["actor"], serde_json::json!({"kind": "workflow", "workflow": "big-deals"}));
//! assert_eq!(body["command_id"], serde_json::json!(add.id()));
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
//! ```

mod command;
mod error;
mod query;
mod retry;

use std::sync::Arc;

use followers_shared::access::Action;
use followers_shared::ids::{AccountId, ContactId, UserId, WorkflowId};
use followers_shared::model::{Actor, RecordRef};
use followers_shared::store::Position;
use followers_shared::wire::{
    AccessAnswer, AccessCheck, AccessibleRecords, AccessibleRecordsAnswer, AccountAnswer,
    AccountQuery, CheckAccess, CheckAccessBatch, ContactOpportunities, ContactOpportunitiesAnswer,
    FollowersAnswer, FollowersQuery, RecordsOfUser, RecordsOfUserAnswer, WhoCanAccess,
    WhoCanAccessAnswer, subject::DEFAULT_PREFIX,
};
use followers_store::NatsArgs;

pub use command::{CommandPayload, CommandRequest, NAMES as COMMAND_NAMES, Reply};
pub use error::{Error, Transient};
pub use query::{Answer, Ask, Question};
pub use retry::Retry;

/// A connection to followers: cheap to clone, shared by every account handle.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    prefix: Arc<str>,
    retry: Retry,
}

impl Client {
    /// A client over a NATS connection the caller made, with whatever authentication it needs.
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            nats,
            prefix: Arc::from(DEFAULT_PREFIX),
            retry: Retry::default(),
        }
    }

    /// Connects with the flags every followers binary takes (URL seed list, `.creds`, nkey,
    /// user and password, token, TLS, inbox prefix); `name` is the connection's name.
    pub async fn connect(args: &NatsArgs, name: &str) -> Result<Self, Error> {
        let nats = args.connect_once(name).await.map_err(Error::Connect)?;
        Ok(Self::new(nats))
    }

    /// Subjects under `prefix` instead of `followers` (the services' `--subject-prefix`).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// The retry policy of every request (each may set its own).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Commands and queries for one account.
    pub fn account(&self, account: AccountId) -> Account {
        Account {
            client: self.clone(),
            account,
            min_position: None,
        }
    }

    /// Queries of `reply`'s account that reflect at least its command (read-your-writes).
    pub fn after(&self, reply: &Reply) -> Account {
        self.account(reply.account().clone()).after(reply)
    }
}

/// Commands and queries for one account; queries answer from at least `min_position`.
#[derive(Debug, Clone)]
pub struct Account {
    client: Client,
    account: AccountId,
    min_position: Option<Position>,
}

impl Account {
    pub fn id(&self) -> &AccountId {
        &self.account
    }

    /// The position this handle's queries wait for, if any.
    pub fn min_position(&self) -> Option<Position> {
        self.min_position
    }

    /// This account's queries, answered from a model that shows `reply`'s command too.
    pub fn after(&self, reply: &Reply) -> Account {
        self.at_least(reply.position())
    }

    /// This account's queries, answered from a model at `position` or later.
    pub fn at_least(&self, position: Position) -> Account {
        Account {
            min_position: Some(self.min_position.map_or(position, |p| p.max(position))),
            ..self.clone()
        }
    }

    /// A command by `actor`: `payload` is one of shared's payload structs. Await it to send.
    pub fn command<P: CommandPayload>(&self, actor: Actor, payload: P) -> CommandRequest<P> {
        CommandRequest::new(self.clone(), actor, payload)
    }

    /// Any query: `request` is one of shared's request structs. Await it to ask.
    pub fn query<Q: Question>(&self, request: Q) -> Ask<Q> {
        Ask::new(self.clone(), request)
    }

    /// `check_access`: may `user` do `action` to `record`, and why (R19-R21).
    pub async fn check_access(
        &self,
        user: &UserId,
        action: Action,
        record: &RecordRef,
    ) -> Result<Answer<AccessAnswer>, Error> {
        let request = CheckAccess {
            hint: false,
            user: user.clone(),
            action,
            record: record.clone(),
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `check_access_batch`: several checks, answered in order.
    pub async fn check_access_batch(
        &self,
        checks: Vec<AccessCheck>,
    ) -> Result<Answer<Vec<AccessAnswer>>, Error> {
        let request = CheckAccessBatch {
            hint: false,
            checks,
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `followers`: a record's owner and followers (R18).
    pub async fn followers(&self, record: &RecordRef) -> Result<Answer<FollowersAnswer>, Error> {
        let request = FollowersQuery {
            record: record.clone(),
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `records_of_user`: the first page (100) of the records `user` owns or follows; for
    /// other pages, [`Account::query`] with [`RecordsOfUser`]'s `after` and `limit`.
    pub async fn records_of_user(
        &self,
        user: &UserId,
    ) -> Result<Answer<RecordsOfUserAnswer>, Error> {
        let request = RecordsOfUser {
            user: user.clone(),
            after: None,
            limit: None,
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `who_can_access`: the first page (100) of the members who may do `action` to `record`,
    /// with the reasons; for other pages, [`Account::query`] with [`WhoCanAccess`]'s `after`
    /// and `limit`.
    pub async fn who_can_access(
        &self,
        record: &RecordRef,
        action: Action,
    ) -> Result<Answer<WhoCanAccessAnswer>, Error> {
        let request = WhoCanAccess {
            record: record.clone(),
            action,
            after: None,
            limit: None,
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `accessible_records`: the first page (100) of what `user` may do `action` to, with the
    /// reasons; for other pages, [`Account::query`] with [`AccessibleRecords`]'s `after` and
    /// `limit`.
    pub async fn accessible_records(
        &self,
        user: &UserId,
        action: Action,
    ) -> Result<Answer<AccessibleRecordsAnswer>, Error> {
        let request = AccessibleRecords {
            user: user.clone(),
            action,
            after: None,
            limit: None,
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `contact_opportunities`: the opportunities linked to a contact.
    pub async fn contact_opportunities(
        &self,
        contact: &ContactId,
    ) -> Result<Answer<ContactOpportunitiesAnswer>, Error> {
        let request = ContactOpportunities {
            contact: contact.clone(),
            min_position: None,
            at_position: None,
            at_time: None,
        };
        self.query(request).await
    }

    /// `account`: the account's settings and members.
    pub async fn settings_and_members(&self) -> Result<Answer<AccountAnswer>, Error> {
        self.query(AccountQuery::default()).await
    }
}

/// The system as actor: the follower sync, imports, operators.
pub fn system() -> Actor {
    Actor::System
}

/// A user as actor.
pub fn user(user: &UserId) -> Actor {
    Actor::User { user: user.clone() }
}

/// A workflow of the CRM's automation as actor (R17, R22).
pub fn workflow(workflow: &WorkflowId) -> Actor {
    Actor::Workflow {
        workflow: workflow.clone(),
    }
}
