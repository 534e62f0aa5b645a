//! The record aggregates: one stream per contact and per opportunity, holding its owner (R4-R7)
//! and its followers (R11-R18).
//!
//! Decisions need context from other aggregates (the account's memberships and settings, and for
//! an opportunity its contact); the caller passes it in as plain data ([`Context`]).

use crate::access::{self, Action, Holders, RecordAccess};
use crate::account::AccountState;
use crate::command::{Command, CommandBody};
use crate::error::DomainError;
use crate::event::{AddedFollower, Event, EventBody, SyncAction};
use crate::ids::{ContactId, UserId};
use crate::model::{AddedHow, Follower, MAX_FOLLOWERS, RecordRef, SkipReason};

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
            followers: &self.followers,
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

/// The contact whose state a command on a record needs as context, if any.
pub fn contact_needed(cmd: &CommandBody, state: &RecordState) -> Option<ContactId> {
    match cmd {
        CommandBody::CreateOpportunity { contact, .. } => Some(contact.clone()),
        _ => state.contact.clone(),
    }
}

fn record_access<'a>(state: &'a RecordState, ctx: &Context<'a>) -> RecordAccess<'a> {
    RecordAccess {
        record: state.holders(),
        contact: ctx.contact.filter(|c| c.created).map(RecordState::holders),
    }
}

/// R5, R15, R20: a user actor needs `action` on the record; workflows and the system may always.
fn authorize(
    cmd: &Command,
    record: &RecordRef,
    access: Option<&RecordAccess<'_>>,
    ctx: &Context<'_>,
    action: Action,
) -> Result<(), DomainError> {
    let Some(user) = cmd.meta.actor.user() else {
        return Ok(());
    };
    let decision = access::decide(
        user,
        ctx.account.member(user),
        &ctx.account.settings,
        access,
        action,
    );
    if decision.allowed {
        Ok(())
    } else {
        Err(DomainError::AccessDenied {
            actor: cmd.meta.actor.clone(),
            action,
            record: record.clone(),
            reason: decision.reason,
        })
    }
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
fn followers_to_add(
    cmd: &Command,
    record: &RecordRef,
    state: &RecordState,
    ctx: &Context<'_>,
    users: &[UserId],
) -> Result<Vec<UserId>, DomainError> {
    // R12: who already follows is not added again, and that is no error, even when they have
    // been deactivated since (R3 keeps them listed); only the new ones must be active members.
    let new: Vec<UserId> = distinct(users)
        .into_iter()
        .filter(|u| !state.follows(u))
        .collect();
    for u in &new {
        ctx.account.require_active_member(&cmd.account, u)?;
    }
    let current = state.followers.len();
    if current + new.len() > MAX_FOLLOWERS {
        return Err(DomainError::FollowerLimit {
            record: record.clone(),
            current,
            adding: new.len(),
            free: MAX_FOLLOWERS.saturating_sub(current),
        });
    }
    Ok(new)
}

fn added(record: &RecordRef, users: Vec<UserId>, how: &AddedHow) -> Option<EventBody> {
    (!users.is_empty()).then(|| EventBody::FollowersAdded {
        record: record.clone(),
        followers: users
            .into_iter()
            .map(|user| AddedFollower {
                user,
                how: how.clone(),
            })
            .collect(),
    })
}

/// Decides a record command. `record` is the command's target.
pub fn decide(
    cmd: &Command,
    record: &RecordRef,
    state: &RecordState,
    ctx: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    if !ctx.account.opened {
        return Err(DomainError::UnknownAccount(cmd.account.clone()));
    }
    let d = Decision {
        cmd,
        record,
        state,
        ctx,
    };
    let bodies = match &cmd.body {
        CommandBody::CreateContact {
            contact,
            owner,
            followers,
        } => d.create_contact(contact, owner.as_ref(), followers)?,
        CommandBody::CreateOpportunity {
            opportunity,
            contact,
            owner,
            followers,
        } => d.create_opportunity(opportunity, contact, owner.as_ref(), followers)?,
        CommandBody::ChangeOwner { owner, .. } => d.change_owner(owner.as_ref())?,
        CommandBody::AddFollowers { users, .. } => d.add_followers(users)?,
        CommandBody::RemoveFollowers { users, .. } => d.remove_followers(users)?,
        CommandBody::AlignOwner { owner, with, .. } => d.align_owner(owner.as_ref(), with)?,
        CommandBody::SyncFollower {
            user,
            action,
            trigger,
            ..
        } => {
            require_created(record, state)?;
            sync_follower(ctx, record, state, user, *action, trigger)
                .into_iter()
                .collect()
        }
        other => {
            return Err(DomainError::NotForThisAggregate {
                command: other.name(),
                aggregate: "record",
            });
        }
    };
    Ok(cmd.meta.events(bodies))
}

/// One record decision: the command, its target and what it reads.
struct Decision<'a> {
    cmd: &'a Command,
    record: &'a RecordRef,
    state: &'a RecordState,
    ctx: &'a Context<'a>,
}

impl Decision<'_> {
    fn how(&self) -> AddedHow {
        AddedHow::for_actor(&self.cmd.meta.actor)
    }

    /// The record exists and the actor may do `action` to it (R5, R15, R20).
    fn require_on_existing(&self, action: Action) -> Result<(), DomainError> {
        require_created(self.record, self.state)?;
        let access = record_access(self.state, self.ctx);
        authorize(self.cmd, self.record, Some(&access), self.ctx, action)
    }

    /// R3, R11-R13, R16: a new contact with its owner and first followers.
    fn create_contact(
        &self,
        contact: &ContactId,
        owner: Option<&UserId>,
        followers: &[UserId],
    ) -> Result<Vec<EventBody>, DomainError> {
        let (cmd, record, state, ctx) = (self.cmd, self.record, self.state, self.ctx);
        if state.created {
            return Err(DomainError::RecordExists(record.clone()));
        }
        authorize_creator(cmd, record, ctx)?;
        if let Some(owner) = owner {
            ctx.account.require_active_member(&cmd.account, owner)?;
        }
        let followers = followers_to_add(cmd, record, state, ctx, followers)?;
        let mut bodies = vec![EventBody::ContactCreated {
            contact: contact.clone(),
            owner: owner.cloned(),
        }];
        bodies.extend(added(record, followers, &self.how()));
        Ok(bodies)
    }

    /// R4, R6, R7, R16: a new opportunity under an existing contact, which it edits.
    fn create_opportunity(
        &self,
        opportunity: &crate::ids::OpportunityId,
        contact: &ContactId,
        owner: Option<&UserId>,
        followers: &[UserId],
    ) -> Result<Vec<EventBody>, DomainError> {
        let (cmd, record, state, ctx) = (self.cmd, self.record, self.state, self.ctx);
        if state.created {
            return Err(DomainError::RecordExists(record.clone()));
        }
        let contact_ref = RecordRef::Contact(contact.clone());
        let Some(contact_state) = ctx.contact.filter(|c| c.created) else {
            return Err(DomainError::UnknownRecord(contact_ref));
        };
        // Creating an opportunity under a contact edits that contact.
        let contact_access = RecordAccess {
            record: contact_state.holders(),
            contact: None,
        };
        authorize(cmd, &contact_ref, Some(&contact_access), ctx, Action::Edit)?;
        let owner = opportunity_owner(cmd, ctx, contact_state, owner)?;
        let followers = followers_to_add(cmd, record, state, ctx, followers)?;
        let mut bodies = vec![EventBody::OpportunityCreated {
            opportunity: opportunity.clone(),
            contact: contact.clone(),
            owner,
        }];
        bodies.extend(added(record, followers, &self.how()));
        Ok(bodies)
    }

    /// R4, R5: an admin, the owner, or a workflow or the system changes the owner.
    fn change_owner(&self, owner: Option<&UserId>) -> Result<Vec<EventBody>, DomainError> {
        let (cmd, record, state, ctx) = (self.cmd, self.record, self.state, self.ctx);
        self.require_on_existing(Action::ChangeOwner)?;
        if let Some(o) = owner {
            ctx.account.require_active_member(&cmd.account, o)?;
        }
        Ok(owner_change(record, state, owner, None))
    }

    /// R11-R13, R15: add followers, atomically, without repeating who already follows.
    fn add_followers(&self, users: &[UserId]) -> Result<Vec<EventBody>, DomainError> {
        let (cmd, record, state, ctx) = (self.cmd, self.record, self.state, self.ctx);
        self.require_on_existing(Action::ManageFollowers)?;
        let new = followers_to_add(cmd, record, state, ctx, users)?;
        Ok(added(record, new, &self.how()).into_iter().collect())
    }

    /// R14, R15: remove followers; removing a non-follower is a no-op.
    fn remove_followers(&self, users: &[UserId]) -> Result<Vec<EventBody>, DomainError> {
        let (record, state) = (self.record, self.state);
        self.require_on_existing(Action::ManageFollowers)?;
        let gone: Vec<UserId> = distinct(users)
            .into_iter()
            .filter(|u| state.follows(u))
            .collect();
        Ok(if gone.is_empty() {
            Vec::new()
        } else {
            vec![EventBody::FollowersRemoved {
                record: record.clone(),
                users: gone,
                owner_sync_from: None,
            }]
        })
    }

    /// R7: the follower sync mirrors the linked record's new owner while owners are coupled,
    /// even onto a user deactivated meanwhile (equal owners is the invariant).
    fn align_owner(
        &self,
        owner: Option<&UserId>,
        with: &RecordRef,
    ) -> Result<Vec<EventBody>, DomainError> {
        require_created(self.record, self.state)?;
        Ok(owner_change(self.record, self.state, owner, Some(with)))
    }
}

/// R6, R7: a new opportunity's owner: its contact's by default; another only when decoupled.
fn opportunity_owner(
    cmd: &Command,
    ctx: &Context<'_>,
    contact: &RecordState,
    owner: Option<&UserId>,
) -> Result<Option<UserId>, DomainError> {
    let Some(o) = owner else {
        return Ok(contact.owner.clone());
    };
    ctx.account.require_active_member(&cmd.account, o)?;
    if ctx.account.settings.owners_coupled() && contact.owner.as_ref() != Some(o) {
        return Err(DomainError::OwnersCoupled {
            contact_owner: describe_owner(contact.owner.as_ref()),
        });
    }
    Ok(Some(o.clone()))
}

/// An `owner_changed` event, or nothing when the owner is already `owner`.
fn owner_change(
    record: &RecordRef,
    state: &RecordState,
    owner: Option<&UserId>,
    coupled_with: Option<&RecordRef>,
) -> Vec<EventBody> {
    if state.owner.as_ref() == owner {
        return Vec::new();
    }
    vec![EventBody::OwnerChanged {
        record: record.clone(),
        from: state.owner.clone(),
        to: owner.cloned(),
        coupled_with: coupled_with.cloned(),
    }]
}

/// R8-R10: the owner sync adds or removes one follower, or records why it did not.
fn sync_follower(
    ctx: &Context<'_>,
    record: &RecordRef,
    state: &RecordState,
    user: &UserId,
    action: SyncAction,
    trigger: &RecordRef,
) -> Option<EventBody> {
    let skip = |reason| {
        Some(EventBody::FollowerSyncSkipped {
            record: record.clone(),
            user: user.clone(),
            action,
            reason,
            trigger: trigger.clone(),
        })
    };
    match action {
        SyncAction::Add => match ctx.account.member(user) {
            None => skip(SkipReason::NotMember),
            Some(m) if !m.active => skip(SkipReason::Inactive),
            Some(_) if state.owner.as_ref() == Some(user) => skip(SkipReason::AlreadyOwner),
            Some(_) if state.follows(user) => skip(SkipReason::AlreadyFollower),
            Some(_) if state.followers.len() >= MAX_FOLLOWERS => {
                skip(SkipReason::FollowerLimitReached)
            }
            Some(_) => added(
                record,
                vec![user.clone()],
                &AddedHow::OwnerSync {
                    from: trigger.clone(),
                },
            ),
        },
        SyncAction::Remove => match state.follower(user) {
            // Nothing to remove: nothing happens.
            None => None,
            Some(f)
                if f.how
                    == (AddedHow::OwnerSync {
                        from: trigger.clone(),
                    }) =>
            {
                Some(EventBody::FollowersRemoved {
                    record: record.clone(),
                    users: vec![user.clone()],
                    owner_sync_from: Some(trigger.clone()),
                })
            }
            Some(_) => skip(SkipReason::NotAddedBySync),
        },
    }
}

/// Creating a record takes an active membership (or a workflow or the system).
fn authorize_creator(
    cmd: &Command,
    record: &RecordRef,
    ctx: &Context<'_>,
) -> Result<(), DomainError> {
    let Some(user) = cmd.meta.actor.user() else {
        return Ok(());
    };
    let reason = match ctx.account.member(user) {
        None => access::Reason::NoMembership,
        Some(m) if !m.active => access::Reason::Inactive,
        Some(_) => return Ok(()),
    };
    Err(DomainError::AccessDenied {
        actor: cmd.meta.actor.clone(),
        action: Action::Edit,
        record: record.clone(),
        reason,
    })
}

fn require_created(record: &RecordRef, state: &RecordState) -> Result<(), DomainError> {
    if state.created {
        Ok(())
    } else {
        Err(unknown(record))
    }
}

fn unknown(record: &RecordRef) -> DomainError {
    DomainError::UnknownRecord(record.clone())
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
            for f in followers {
                if !state.follows(&f.user) {
                    state.followers.push(Follower {
                        user: f.user.clone(),
                        added_at: event.meta.at,
                        added_by: event.meta.actor.clone(),
                        how: f.how.clone(),
                    });
                }
            }
        }
        EventBody::FollowersRemoved { users, .. } => {
            state.followers.retain(|f| !users.contains(&f.user));
        }
        _ => {}
    }
    state
}
