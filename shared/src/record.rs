//! The record aggregates: one stream per contact and per opportunity, holding its owner (R4-R7)
//! and its followers (R11-R18).
//!
//! Decisions need context from other aggregates (the account's memberships and settings, and for
//! an opportunity its contact); the caller passes it in as plain data ([`Context`]).
//!
//! Two deciders share this state: [`decide_record`] for the callers' [`RecordCommand`]s and
//! [`decide_sync`] for the follower sync's [`SyncCommand`]s. Each dispatches to one function per
//! command, which names the rules it keeps. [`without_record`] is R17's part: a follower command
//! that names no record.

use crate::access::{self, Action, FollowerList, Holders, RecordAccess};
use crate::account::AccountState;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::command::{
    AddFollowers, AlignOwner, ChangeFollowerUntil, ChangeOwner, CommandMeta, CreateContact,
    CreateOpportunity, ExpireFollower, RecordCommand, RemoveFollowers, SyncCommand, SyncFollower,
};
use crate::error::DomainError;
use crate::event::{AddedFollower, Event, EventBody, SyncAction};
use crate::ids::{AccountId, ContactId, UserId};
use crate::model::{Actor, AddedHow, Follower, MAX_FOLLOWERS, RecordRef, SkipReason};

/// One contact or opportunity.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordState {
    pub created: bool,
    pub owner: Option<UserId>,
    pub followers: Vec<Follower>,
    /// For an opportunity: its contact (R4).
    pub contact: Option<ContactId>,
}

impl RecordState {
    pub fn holders(&self) -> Holders<'_> {
        Holders {
            owner: self.owner.as_ref(),
            followers: FollowerList::Listed(&self.followers),
        }
    }

    pub fn follows(&self, user: &UserId) -> bool {
        self.followers.iter().any(|f| &f.user == user)
    }

    pub fn follower(&self, user: &UserId) -> Option<&Follower> {
        self.followers.iter().find(|f| &f.user == user)
    }
}

/// What a record decision reads from other aggregates.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub account: &'a AccountState,
    /// For an opportunity: its contact (for a new one, the contact it names). `None` when the
    /// record is a contact, or when the named contact does not exist.
    pub contact: Option<&'a RecordState>,
}

/// Everything one record decision reads: who asks in which account, the record the command is
/// about, its state, and the context.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub account: &'a AccountId,
    pub meta: &'a CommandMeta,
    pub record: &'a RecordRef,
    pub state: &'a RecordState,
    pub ctx: &'a Context<'a>,
}

/// The contact whose state a command on a record needs as context, if any: the one a new
/// opportunity names, or the record's own contact.
pub fn contact_needed(cmd: Option<&RecordCommand>, state: &RecordState) -> Option<ContactId> {
    match cmd {
        Some(RecordCommand::CreateOpportunity(c)) => Some(c.contact.clone()),
        _ => state.contact.clone(),
    }
}

/// Decides a caller's record command on `input.record` (R3-R18).
pub fn decide_record(input: &Input<'_>, cmd: &RecordCommand) -> Result<Vec<Event>, DomainError> {
    require_open_account(input)?;
    let bodies = match cmd {
        RecordCommand::CreateContact(c) => create_contact(input, c)?,
        RecordCommand::CreateOpportunity(c) => create_opportunity(input, c)?,
        RecordCommand::ChangeOwner(c) => change_owner(input, c)?,
        RecordCommand::AddFollowers(c) => add_followers(input, c)?,
        RecordCommand::RemoveFollowers(c) => remove_followers(input, c)?,
        RecordCommand::ChangeFollowerUntil(c) => change_follower_until(input, c)?,
    };
    Ok(input.meta.events(bodies))
}

/// Decides a follower sync reaction on `input.record` (R7-R10).
pub fn decide_sync(input: &Input<'_>, cmd: &SyncCommand) -> Result<Vec<Event>, DomainError> {
    require_open_account(input)?;
    let bodies = match cmd {
        SyncCommand::AlignOwner(c) => align_owner(input, c)?,
        SyncCommand::SyncFollower(c) => sync_follower(input, c)?,
        SyncCommand::ExpireFollower(c) => expire_follower(input, c)?,
    };
    Ok(input.meta.events(bodies))
}

/// R17: workflows act on records only. A follower command without a record does nothing when a
/// workflow sends it (it had no record context), and is refused from anyone else. `Ok` too for
/// a command that names its record.
pub fn without_record(actor: &Actor, cmd: &RecordCommand) -> Result<(), DomainError> {
    if cmd.record().is_some() || matches!(actor, Actor::Workflow { .. }) {
        Ok(())
    } else {
        Err(DomainError::RecordRequired {
            command: cmd.name(),
        })
    }
}

/// Issue 17.4: an `add_followers` gives an `until` only to users it names. `Ok` for every
/// other command.
pub fn until_of_users(cmd: &RecordCommand) -> Result<(), DomainError> {
    match cmd {
        RecordCommand::AddFollowers(c) => until_of_added(c),
        _ => Ok(()),
    }
}

fn until_of_added(c: &AddFollowers) -> Result<(), DomainError> {
    match c.until.keys().find(|u| !c.users.contains(u)) {
        Some(u) => Err(DomainError::UntilWithoutUser(u.clone())),
        None => Ok(()),
    }
}

/// Issue 17.4: an `until` must lie after the time the command is decided at.
fn require_future(
    input: &Input<'_>,
    user: &UserId,
    until: DateTime<Utc>,
) -> Result<(), DomainError> {
    if until > input.meta.at {
        Ok(())
    } else {
        Err(DomainError::UntilPassed {
            user: user.clone(),
            until,
        })
    }
}

fn require_open_account(input: &Input<'_>) -> Result<(), DomainError> {
    if input.ctx.account.opened {
        Ok(())
    } else {
        Err(DomainError::UnknownAccount(input.account.clone()))
    }
}

fn record_access<'a>(state: &'a RecordState, ctx: &Context<'a>) -> RecordAccess<'a> {
    RecordAccess {
        record: state.holders(),
        contact: ctx.contact.filter(|c| c.created).map(RecordState::holders),
    }
}

/// R5, R15, R20: a user actor needs `action` on `record`; workflows and the system may always.
fn authorize(
    input: &Input<'_>,
    record: &RecordRef,
    access: &RecordAccess<'_>,
    action: Action,
) -> Result<(), DomainError> {
    let actor = &input.meta.actor;
    let Some(user) = actor.user() else {
        return Ok(());
    };
    let account = input.ctx.account;
    let decision = access::decide_access(
        user,
        account.member(user),
        &account.settings,
        Some(access),
        action,
    );
    if decision.allowed {
        Ok(())
    } else {
        Err(DomainError::AccessDenied {
            actor: actor.clone(),
            action,
            record: record.clone(),
            reason: decision.reason,
        })
    }
}

/// The record exists and the actor may do `action` to it (R5, R15, R20).
fn require_on_existing(input: &Input<'_>, action: Action) -> Result<(), DomainError> {
    require_created(input.record, input.state)?;
    let access = record_access(input.state, input.ctx);
    authorize(input, input.record, &access, action)
}

/// Creating a record takes an active membership (or a workflow or the system).
fn authorize_creator(input: &Input<'_>) -> Result<(), DomainError> {
    let actor = &input.meta.actor;
    let Some(user) = actor.user() else {
        return Ok(());
    };
    let reason = match input.ctx.account.member(user) {
        None => access::Reason::NoMembership,
        Some(m) if !m.active => access::Reason::Inactive,
        Some(_) => return Ok(()),
    };
    Err(DomainError::AccessDenied {
        actor: actor.clone(),
        action: Action::Edit,
        record: input.record.clone(),
        reason,
    })
}

/// Removes repeated users, keeping the first occurrence's order.
fn distinct(users: &[UserId]) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::with_capacity(users.len());
    for u in users {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

/// R3, R11-R13: the users of an add that do not follow yet, all of them active members, and room
/// for all of them. Atomic: any problem rejects the whole add.
fn followers_to_add(input: &Input<'_>, users: &[UserId]) -> Result<Vec<UserId>, DomainError> {
    let state = input.state;
    // R12: who already follows is not added again, and that is no error, even when they have
    // been deactivated since (R3 keeps them listed); only the new ones must be active members.
    let new: Vec<UserId> = distinct(users)
        .into_iter()
        .filter(|u| !state.follows(u))
        .collect();
    for u in &new {
        input.ctx.account.require_active_member(input.account, u)?;
    }
    let current = state.followers.len();
    if current + new.len() > MAX_FOLLOWERS {
        return Err(DomainError::FollowerLimit {
            record: input.record.clone(),
            current,
            adding: new.len(),
            free: MAX_FOLLOWERS.saturating_sub(current),
        });
    }
    Ok(new)
}

/// Until removed: no follower added this way expires.
static NO_UNTIL: BTreeMap<UserId, DateTime<Utc>> = BTreeMap::new();

fn added(
    record: &RecordRef,
    users: Vec<UserId>,
    how: &AddedHow,
    until: &BTreeMap<UserId, DateTime<Utc>>,
) -> Option<EventBody> {
    (!users.is_empty()).then(|| EventBody::FollowersAdded {
        record: record.clone(),
        followers: users
            .into_iter()
            .map(|user| AddedFollower {
                until: until.get(&user).copied(),
                user,
                how: how.clone(),
            })
            .collect(),
    })
}

/// How the actor's additions are recorded (R16).
fn how(input: &Input<'_>) -> AddedHow {
    AddedHow::for_actor(&input.meta.actor)
}

/// R3, R11-R13, R16: a new contact with its owner and first followers.
fn create_contact(input: &Input<'_>, c: &CreateContact) -> Result<Vec<EventBody>, DomainError> {
    if input.state.created {
        return Err(DomainError::RecordExists(input.record.clone()));
    }
    authorize_creator(input)?;
    if let Some(owner) = &c.owner {
        input
            .ctx
            .account
            .require_active_member(input.account, owner)?;
    }
    let followers = followers_to_add(input, &c.followers)?;
    let mut bodies = vec![EventBody::ContactCreated {
        contact: c.contact.clone(),
        owner: c.owner.clone(),
    }];
    bodies.extend(added(input.record, followers, &how(input), &NO_UNTIL));
    Ok(bodies)
}

/// R4, R6, R7, R16: a new opportunity under an existing contact, which it edits.
fn create_opportunity(
    input: &Input<'_>,
    c: &CreateOpportunity,
) -> Result<Vec<EventBody>, DomainError> {
    if input.state.created {
        return Err(DomainError::RecordExists(input.record.clone()));
    }
    let contact_ref = RecordRef::Contact(c.contact.clone());
    let Some(contact_state) = input.ctx.contact.filter(|c| c.created) else {
        return Err(DomainError::UnknownRecord(contact_ref));
    };
    // Creating an opportunity under a contact edits that contact.
    let contact_access = RecordAccess {
        record: contact_state.holders(),
        contact: None,
    };
    authorize(input, &contact_ref, &contact_access, Action::Edit)?;
    let owner = opportunity_owner(input, contact_state, c.owner.as_ref())?;
    let followers = followers_to_add(input, &c.followers)?;
    let mut bodies = vec![EventBody::OpportunityCreated {
        opportunity: c.opportunity.clone(),
        contact: c.contact.clone(),
        owner,
    }];
    bodies.extend(added(input.record, followers, &how(input), &NO_UNTIL));
    Ok(bodies)
}

/// R6, R7: a new opportunity's owner: its contact's by default; another only when decoupled.
fn opportunity_owner(
    input: &Input<'_>,
    contact: &RecordState,
    owner: Option<&UserId>,
) -> Result<Option<UserId>, DomainError> {
    let Some(o) = owner else {
        return Ok(contact.owner.clone());
    };
    let account = input.ctx.account;
    account.require_active_member(input.account, o)?;
    if account.settings.owners_coupled() && contact.owner.as_ref() != Some(o) {
        return Err(DomainError::OwnersCoupled {
            contact_owner: describe_owner(contact.owner.as_ref()),
        });
    }
    Ok(Some(o.clone()))
}

/// R3, R4, R5: an admin, the owner, or a workflow or the system changes the owner, to an active
/// member or to nobody.
fn change_owner(input: &Input<'_>, c: &ChangeOwner) -> Result<Vec<EventBody>, DomainError> {
    require_on_existing(input, Action::ChangeOwner)?;
    if let Some(o) = &c.owner {
        input.ctx.account.require_active_member(input.account, o)?;
    }
    Ok(owner_change(input, c.owner.as_ref(), None))
}

/// R11-R13, R15, R16: add followers, atomically, without repeating who already follows.
/// Issue 17.4: each new follower's `until`, if given, lies in the future; who already follows
/// keeps their entry, their `until` included.
fn add_followers(input: &Input<'_>, c: &AddFollowers) -> Result<Vec<EventBody>, DomainError> {
    require_on_existing(input, Action::ManageFollowers)?;
    until_of_added(c)?;
    let new = followers_to_add(input, &c.users)?;
    for u in &new {
        if let Some(until) = c.until.get(u) {
            require_future(input, u, *until)?;
        }
    }
    Ok(added(input.record, new, &how(input), &c.until)
        .into_iter()
        .collect())
}

/// Issue 17.4: set, move or clear one follower's `until`; the same `until` again is a no-op.
fn change_follower_until(
    input: &Input<'_>,
    c: &ChangeFollowerUntil,
) -> Result<Vec<EventBody>, DomainError> {
    require_on_existing(input, Action::ManageFollowers)?;
    let Some(follower) = input.state.follower(&c.user) else {
        return Err(DomainError::NotFollower {
            record: input.record.clone(),
            user: c.user.clone(),
        });
    };
    if let Some(until) = c.until {
        require_future(input, &c.user, until)?;
    }
    if follower.until == c.until {
        return Ok(Vec::new());
    }
    Ok(vec![EventBody::FollowerUntilChanged {
        record: input.record.clone(),
        user: c.user.clone(),
        until: c.until,
    }])
}

/// Issue 17.4: the system removes a follower whose `until` came. Nothing happens (and nothing
/// is refused) when the user no longer follows, follows with another `until`, or it is not due
/// yet: the expiry was overtaken by a removal or a change, or the scheduler's clock runs ahead.
fn expire_follower(input: &Input<'_>, c: &ExpireFollower) -> Result<Vec<EventBody>, DomainError> {
    require_created(input.record, input.state)?;
    let due = input
        .state
        .follower(&c.user)
        .is_some_and(|f| f.until == Some(c.until) && c.until <= input.meta.at);
    Ok(if due {
        vec![EventBody::FollowerExpired {
            record: input.record.clone(),
            user: c.user.clone(),
            until: c.until,
        }]
    } else {
        Vec::new()
    })
}

/// R14, R15: remove followers; removing a non-follower is a no-op.
fn remove_followers(input: &Input<'_>, c: &RemoveFollowers) -> Result<Vec<EventBody>, DomainError> {
    require_on_existing(input, Action::ManageFollowers)?;
    let gone: Vec<UserId> = distinct(&c.users)
        .into_iter()
        .filter(|u| input.state.follows(u))
        .collect();
    Ok(if gone.is_empty() {
        Vec::new()
    } else {
        vec![EventBody::FollowersRemoved {
            record: input.record.clone(),
            users: gone,
            owner_sync_from: None,
        }]
    })
}

/// R7: the follower sync mirrors the linked record's new owner while owners are coupled,
/// even onto a user deactivated meanwhile (equal owners is the invariant).
fn align_owner(input: &Input<'_>, c: &AlignOwner) -> Result<Vec<EventBody>, DomainError> {
    require_created(input.record, input.state)?;
    Ok(owner_change(input, c.owner.as_ref(), Some(&c.with)))
}

/// An `owner_changed` event, or nothing when the owner is already `owner`.
fn owner_change(
    input: &Input<'_>,
    owner: Option<&UserId>,
    coupled_with: Option<&RecordRef>,
) -> Vec<EventBody> {
    if input.state.owner.as_ref() == owner {
        return Vec::new();
    }
    vec![EventBody::OwnerChanged {
        record: input.record.clone(),
        from: input.state.owner.clone(),
        to: owner.cloned(),
        coupled_with: coupled_with.cloned(),
    }]
}

/// R8-R10: the owner sync adds or removes one follower, or records why it did not (R10).
fn sync_follower(input: &Input<'_>, c: &SyncFollower) -> Result<Vec<EventBody>, DomainError> {
    require_created(input.record, input.state)?;
    let body = match c.action {
        SyncAction::Add => sync_add(input, c),
        SyncAction::Remove => sync_remove(input, c),
    };
    Ok(body.into_iter().collect())
}

/// R8, R9, R10: add the new owner as a follower unless a rule forbids it; then record the skip.
fn sync_add(input: &Input<'_>, c: &SyncFollower) -> Option<EventBody> {
    let state = input.state;
    let skip = |reason| skipped(input, c, reason);
    match input.ctx.account.member(&c.user) {
        None => skip(SkipReason::NotMember),
        Some(m) if !m.active => skip(SkipReason::Inactive),
        Some(_) if state.owner.as_ref() == Some(&c.user) => skip(SkipReason::AlreadyOwner),
        Some(_) if state.follows(&c.user) => skip(SkipReason::AlreadyFollower),
        Some(_) if state.followers.len() >= MAX_FOLLOWERS => skip(SkipReason::FollowerLimitReached),
        Some(_) => added(
            input.record,
            vec![c.user.clone()],
            &AddedHow::OwnerSync {
                from: c.trigger.clone(),
            },
            &NO_UNTIL,
        ),
    }
}

/// R8, R9: remove the previous owner only where this record's owner sync added them.
fn sync_remove(input: &Input<'_>, c: &SyncFollower) -> Option<EventBody> {
    let by_this_sync = AddedHow::OwnerSync {
        from: c.trigger.clone(),
    };
    match input.state.follower(&c.user) {
        // Nothing to remove: nothing happens.
        None => None,
        Some(f) if *f.how == by_this_sync => Some(EventBody::FollowersRemoved {
            record: input.record.clone(),
            users: vec![c.user.clone()],
            owner_sync_from: Some(c.trigger.clone()),
        }),
        Some(_) => skipped(input, c, SkipReason::NotAddedBySync),
    }
}

/// R10: what the sync did not do, and why.
fn skipped(input: &Input<'_>, c: &SyncFollower, reason: SkipReason) -> Option<EventBody> {
    Some(EventBody::FollowerSyncSkipped {
        record: input.record.clone(),
        user: c.user.clone(),
        action: c.action,
        reason,
        trigger: c.trigger.clone(),
    })
}

fn require_created(record: &RecordRef, state: &RecordState) -> Result<(), DomainError> {
    if state.created {
        Ok(())
    } else {
        Err(DomainError::UnknownRecord(record.clone()))
    }
}

fn describe_owner(owner: Option<&UserId>) -> String {
    owner.map_or_else(|| "unassigned".to_owned(), |o| format!("`{o}`"))
}

/// Applies one event to a record's state. Events of other aggregates are ignored.
pub fn evolve(mut state: RecordState, event: &Event) -> RecordState {
    match &event.body {
        EventBody::ContactCreated { owner, .. } => {
            state.created = true;
            state.owner = owner.clone();
        }
        EventBody::OpportunityCreated { contact, owner, .. } => {
            state.created = true;
            state.owner = owner.clone();
            state.contact = Some(contact.clone());
        }
        EventBody::OwnerChanged { to, .. } => state.owner = to.clone(),
        EventBody::FollowersAdded { followers, .. } => {
            let added_by = Arc::new(event.meta.actor.clone());
            for f in followers {
                if !state.follows(&f.user) {
                    state.followers.push(Follower {
                        user: f.user.clone(),
                        added_at: event.meta.at,
                        added_by: Arc::clone(&added_by),
                        how: Arc::new(f.how.clone()),
                        until: f.until,
                        until_set_by: f.until.map(|_| event.meta.event_id),
                    });
                }
            }
        }
        EventBody::FollowersRemoved { users, .. } => {
            state.followers.retain(|f| !users.contains(&f.user));
        }
        EventBody::FollowerUntilChanged { user, until, .. } => {
            if let Some(f) = state.followers.iter_mut().find(|f| &f.user == user) {
                f.until = *until;
                f.until_set_by = until.map(|_| event.meta.event_id);
            }
        }
        EventBody::FollowerExpired { user, .. } => {
            state.followers.retain(|f| &f.user != user);
        }
        _ => {}
    }
    state
}
