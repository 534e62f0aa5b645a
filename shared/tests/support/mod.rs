//! A given/when/then harness over the pure domain: no store, no network.
//!
//! The harness holds a [`ReadModel`] and plays the part of the command service and of the follower
//! sync process: a command is decided with [`decide_command`] against the model, its events are
//! stored as a [`StoredCommit`] at the next position and applied to the model, and the sync's
//! [`reactions`] to that commit are queued. [`Harness::settle`] runs the queue to quiescence, so a
//! test sees what the follower sync would have done (R7-R10).
//!
//! Every command carries the same fixed time ([`at`]), so tests can compare `added_at` and event
//! times exactly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;

use chrono::{DateTime, TimeZone, Utc};
use followers_shared::access::{AccessDecision, Action};
use followers_shared::bounded::{SomeUsers, Text, Users};
#[allow(unused_imports)]
pub use followers_shared::command::{
    AddFollowers, AlignOwner, ChangeMemberDataScope, ChangeMemberRole, ChangeOwner, ChangeSettings,
    CreateContact, CreateOpportunity, DeactivateMember, OpenAccount, ReactivateMember,
    RegisterMember, RemoveFollowers, SyncFollower,
};
use followers_shared::command::{Command, CommandBody, CommandMeta};
use followers_shared::decision::{Decision, decide_command};
use followers_shared::error::{DomainError, ErrorCode};
use followers_shared::event::{Event, EventBody};
use followers_shared::hint::AccessHint;
use followers_shared::ids::{AccountId, CommandId, ContactId, OpportunityId, UserId, WorkflowId};
use followers_shared::model::{
    Actor, DataScope, Follower, Membership, RecordRef, Role, SettingsChange,
};
use followers_shared::read_model::ReadModel;
use followers_shared::store::{Commit, Position, StoredCommit, Version};
use followers_shared::sync::reactions;
use uuid::Uuid;

/// The account most tests play in.
pub const ACME: &str = "acme";
/// A second account, for the rules about crossing accounts (R1, R2).
pub const GLOBEX: &str = "globex";

/// The fixed time every command of the harness is received at.
pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
}

pub fn account(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

pub fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

pub fn users(ids: &[&str]) -> Vec<UserId> {
    ids.iter().map(|u| user(u)).collect()
}

pub fn contact(id: &str) -> RecordRef {
    RecordRef::Contact(ContactId::new(id).unwrap())
}

pub fn opportunity(id: &str) -> RecordRef {
    RecordRef::Opportunity(OpportunityId::new(id).unwrap())
}

pub fn contact_id(id: &str) -> ContactId {
    ContactId::new(id).unwrap()
}

pub fn opportunity_id(id: &str) -> OpportunityId {
    OpportunityId::new(id).unwrap()
}

/// A user actor.
pub fn by(user_id: &str) -> Actor {
    Actor::User {
        user: user(user_id),
    }
}

pub fn workflow(id: &str) -> Actor {
    Actor::Workflow {
        workflow: WorkflowId::new(id).unwrap(),
    }
}

pub fn system() -> Actor {
    Actor::System
}

/// Settings with the two sync sub-settings and decoupled owners as given.
pub fn decoupled(sync_contact_follower: bool, sync_opportunity_follower: bool) -> SettingsChange {
    SettingsChange {
        allow_different_owners: Some(true),
        sync_contact_follower_with_opportunity_owner: Some(sync_contact_follower),
        sync_opportunity_follower_with_contact_owner: Some(sync_opportunity_follower),
        contact_access_includes_opportunities: None,
    }
}

/// The result of a `when`, with the assertions on it.
#[derive(Debug)]
pub struct Then {
    pub result: Result<Decision, DomainError>,
}

impl Then {
    /// The command was accepted and produced exactly these event bodies, in order (meta ignored).
    pub fn then_events(&self, expected: &[EventBody]) -> &Decision {
        match &self.result {
            Ok(d) => {
                let bodies: Vec<&EventBody> = d.events.iter().map(|e| &e.body).collect();
                let expected: Vec<&EventBody> = expected.iter().collect();
                assert_eq!(bodies, expected, "unexpected events");
                d
            }
            Err(e) => panic!("expected events {expected:?}, got error {e:?} ({e})"),
        }
    }

    /// The command was accepted and changed nothing.
    pub fn then_no_events(&self) -> &Decision {
        self.then_events(&[])
    }

    /// The command was rejected with this code.
    pub fn then_error(&self, code: ErrorCode) -> &DomainError {
        match &self.result {
            Ok(d) => panic!("expected error {code:?}, got events {:?}", d.events),
            Err(e) => {
                assert_eq!(e.code(), code, "unexpected error {e:?} ({e})");
                e
            }
        }
    }

    pub fn events(&self) -> &[Event] {
        &self
            .result
            .as_ref()
            .expect("the command was rejected")
            .events
    }
}

/// The pure domain, driven like the services drive it.
#[derive(Debug)]
pub struct Harness {
    pub model: ReadModel,
    /// The default account of [`Harness::cmd`] and of the builders.
    pub account: AccountId,
    next_position: u64,
    /// Every commit stored, in order.
    pub log: Vec<StoredCommit>,
    /// Commands of the follower sync not yet decided.
    pending: VecDeque<Command>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::empty()
    }
}

impl Harness {
    /// Nothing stored yet, not even an account.
    pub fn empty() -> Self {
        Self {
            model: ReadModel::tracking_commands(),
            account: account(ACME),
            next_position: 1,
            log: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    /// Account `acme`, opened by the system with the default settings.
    pub fn new() -> Self {
        let mut h = Self::empty();
        h.open_account(ACME, SettingsChange::default());
        h
    }

    /// Account `acme`, opened with `settings`.
    pub fn with_settings(settings: SettingsChange) -> Self {
        let mut h = Self::empty();
        h.open_account(ACME, settings);
        h
    }

    // ----- commands -----

    /// A command of `actor` in the default account.
    pub fn cmd(&self, actor: Actor, body: impl Into<CommandBody>) -> Command {
        self.cmd_in(&self.account.clone(), actor, body)
    }

    pub fn cmd_in(
        &self,
        account: &AccountId,
        actor: Actor,
        body: impl Into<CommandBody>,
    ) -> Command {
        let command_id = CommandId::new();
        Command {
            account: account.clone(),
            meta: CommandMeta {
                command_id,
                actor,
                caller: None,
                correlation: command_id.0,
                causation: None,
                at: at(),
            },
            body: body.into(),
            dry_run: false,
        }
    }

    /// Decides `cmd`; on success stores and applies its events and queues the sync's reactions.
    pub fn when(&mut self, cmd: Command) -> Then {
        let result = decide_command(&self.model, &cmd);
        if let Ok(d) = &result {
            self.store(d);
        }
        Then { result }
    }

    /// A setup step that must succeed. Returns its events.
    #[track_caller]
    pub fn given(&mut self, cmd: Command) -> Vec<Event> {
        let name = cmd.body.name();
        match self.when(cmd).result {
            Ok(d) => d.events,
            Err(e) => panic!("given {name} was rejected: {e}"),
        }
    }

    /// Stores a decision's events as one commit, applies it and queues the reactions to it.
    fn store(&mut self, d: &Decision) -> Option<StoredCommit> {
        let stream = d.stream.clone()?;
        let first = d.events.first()?;
        let position = self.next_position;
        self.next_position += 1;
        let stored = StoredCommit {
            stream,
            version: Version(position),
            position: Position(position),
            commit: Commit::new(first.meta.command_id, d.events.clone()),
            trace: None,
        };
        self.model.apply(&stored);
        self.pending.extend(reactions(&self.model, &stored, at()));
        self.log.push(stored.clone());
        Some(stored)
    }

    /// Runs the follower sync until nothing is left to do. Returns the events it appended.
    #[track_caller]
    pub fn settle(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let mut steps = 0;
        while let Some(cmd) = self.pending.pop_front() {
            steps += 1;
            assert!(steps < 10_000, "the follower sync does not come to rest");
            match decide_command(&self.model, &cmd) {
                Ok(d) => {
                    out.extend(d.events.iter().cloned());
                    self.store(&d);
                }
                Err(e) => panic!("the sync's {:?} was rejected: {e}", cmd.body),
            }
        }
        out
    }

    /// The sync commands waiting to be decided.
    pub fn pending(&self) -> &VecDeque<Command> {
        &self.pending
    }

    /// Every event stored, in order.
    pub fn events(&self) -> Vec<&Event> {
        self.log
            .iter()
            .flat_map(|c| c.commit.events.iter())
            .collect()
    }

    /// A fresh model rebuilt from the stored commits (R23).
    pub fn replay(&self) -> ReadModel {
        let mut model = ReadModel::tracking_commands();
        for c in &self.log {
            model.apply(c);
        }
        model
    }

    /// The projection's model of the stored commits: it drops the chain values and, unlike the
    /// command service's, keeps who holds what for the queries.
    pub fn replay_for_queries(&self) -> ReadModel {
        let mut model = ReadModel::with_chains(followers_shared::read_model::Chains::Dropped);
        for c in &self.log {
            model.apply(c);
        }
        model
    }

    /// A fresh model rebuilt from the commits up to and including `position`.
    pub fn replay_until(&self, position: Position) -> ReadModel {
        let mut model = ReadModel::tracking_commands();
        for c in self.log.iter().filter(|c| c.position <= position) {
            model.apply(c);
        }
        model
    }

    pub fn position(&self) -> Position {
        self.model.position()
    }

    // ----- setup builders (system actor unless told otherwise) -----

    pub fn open_account(&mut self, id: &str, settings: SettingsChange) {
        let a = account(id);
        let name = text(&format!("{id} inc"));
        self.given(self.cmd_in(&a, system(), OpenAccount { name, settings }));
    }

    pub fn change_settings(&mut self, change: SettingsChange) {
        self.given(self.cmd(system(), ChangeSettings { change }));
    }

    pub fn member(&mut self, id: &str, role: Role, data_scope: DataScope) {
        let a = self.account.clone();
        self.member_in(&a, id, role, data_scope);
    }

    pub fn member_in(&mut self, acc: &AccountId, id: &str, role: Role, data_scope: DataScope) {
        self.given(self.cmd_in(
            acc,
            system(),
            RegisterMember {
                user: user(id),
                name: text(&format!("User {id}")),
                email: text(&format!("{id}@example.com")),
                role,
                data_scope,
            },
        ));
    }

    /// A member with role `admin` (scope `all`).
    pub fn admin(&mut self, id: &str) {
        self.member(id, Role::Admin, DataScope::All);
    }

    /// A member with role `user` and data scope `all`.
    pub fn all_data_user(&mut self, id: &str) {
        self.member(id, Role::User, DataScope::All);
    }

    /// A member with role `user` and data scope `only_assigned`.
    pub fn assigned_only_user(&mut self, id: &str) {
        self.member(id, Role::User, DataScope::OnlyAssigned);
    }

    /// Several `only_assigned` users.
    pub fn assigned_only_users(&mut self, ids: &[&str]) {
        for id in ids {
            self.assigned_only_user(id);
        }
    }

    pub fn deactivate(&mut self, id: &str) {
        self.given(self.cmd(system(), DeactivateMember { user: user(id) }));
    }

    pub fn reactivate(&mut self, id: &str) {
        self.given(self.cmd(system(), ReactivateMember { user: user(id) }));
    }

    pub fn create_contact(&mut self, id: &str, owner: Option<&str>) {
        self.given(self.cmd(system(), create_contact(id, owner, &[])));
    }

    pub fn create_opportunity(&mut self, id: &str, of_contact: &str, owner: Option<&str>) {
        self.given(self.cmd(system(), create_opportunity(id, of_contact, owner, &[])));
    }

    /// `followers` follow `record`, added by the system.
    pub fn follow(&mut self, record: &RecordRef, followers: &[&str]) {
        self.given(self.cmd(system(), add_followers(record, followers)));
    }

    /// The system changes the owner of `record` (no settle).
    pub fn set_owner(&mut self, record: &RecordRef, owner: Option<&str>) {
        self.given(self.cmd(system(), change_owner(record, owner)));
    }

    // ----- reading the model -----

    pub fn owner(&self, record: &RecordRef) -> Option<UserId> {
        self.model
            .record(&self.account, record)
            .and_then(|r| r.state.owner.clone())
    }

    /// The followers of `record`, in list order.
    pub fn followers(&self, record: &RecordRef) -> Vec<UserId> {
        self.model
            .record(&self.account, record)
            .map(|r| r.state.followers.iter().map(|f| f.user.clone()).collect())
            .unwrap_or_default()
    }

    pub fn follower(&self, record: &RecordRef, id: &str) -> Option<Follower> {
        self.model
            .record(&self.account, record)
            .and_then(|r| r.state.follower(&user(id)).cloned())
    }

    pub fn membership(&self, id: &str) -> Option<&Membership> {
        self.model
            .account(&self.account)
            .and_then(|a| a.state.member(&user(id)))
    }

    /// R19-R21 as the projection answers it.
    pub fn check(&self, id: &str, action: Action, record: &RecordRef) -> AccessDecision {
        self.model.check(&self.account, &user(id), action, record)
    }

    /// How `id` could get `action` on `record`, if denied: the hint `check_access` gives.
    pub fn hint(&self, id: &str, action: Action, record: &RecordRef) -> Option<AccessHint> {
        let (_, hint) = self
            .model
            .check_with_hint(&self.account, &user(id), action, record);
        hint
    }
}

// ----- command bodies -----

/// Free text for a command (a name, an email).
pub fn text(value: &str) -> Text {
    Text::new(value).unwrap()
}

/// One or more users of an add or a removal.
pub fn some_users(ids: &[&str]) -> SomeUsers {
    SomeUsers::new(users(ids)).unwrap()
}

pub fn create_contact(id: &str, owner: Option<&str>, followers: &[&str]) -> CreateContact {
    CreateContact {
        contact: contact_id(id),
        owner: owner.map(user),
        followers: Users::new(users(followers)).unwrap(),
    }
}

pub fn create_opportunity(
    id: &str,
    of_contact: &str,
    owner: Option<&str>,
    followers: &[&str],
) -> CreateOpportunity {
    CreateOpportunity {
        opportunity: opportunity_id(id),
        contact: contact_id(of_contact),
        owner: owner.map(user),
        followers: Users::new(users(followers)).unwrap(),
    }
}

pub fn change_owner(record: &RecordRef, owner: Option<&str>) -> ChangeOwner {
    ChangeOwner {
        record: record.clone(),
        owner: owner.map(user),
    }
}

pub fn add_followers(record: &RecordRef, followers: &[&str]) -> AddFollowers {
    AddFollowers {
        until: Default::default(),
        record: Some(record.clone()),
        users: some_users(followers),
    }
}

pub fn remove_followers(record: &RecordRef, followers: &[&str]) -> RemoveFollowers {
    RemoveFollowers {
        record: Some(record.clone()),
        users: some_users(followers),
    }
}

/// A correlation id for tests that need one.
pub fn correlation() -> Uuid {
    Uuid::now_v7()
}
