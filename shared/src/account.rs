//! The account aggregate: its settings (R7-R9, R20) and its memberships (R2, R3).
//!
//! One stream per account. Record decisions read this state as context (is the actor an active
//! member? what do the settings say?) but never write to it.

use std::collections::HashMap;

use crate::command::{Command, CommandBody};
use crate::error::DomainError;
use crate::event::{Event, EventBody};
use crate::ids::{AccountId, UserId};
use crate::model::{AccountSettings, Actor, Membership, Role};

/// Everything known about one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountState {
    pub opened: bool,
    pub name: String,
    pub settings: AccountSettings,
    /// Written in user order, so that the same state always gives the same JSON (snapshots are
    /// compared and digested).
    #[serde(serialize_with = "in_user_order")]
    pub members: HashMap<UserId, Membership>,
}

fn in_user_order<S: serde::Serializer>(
    members: &HashMap<UserId, Membership>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(members.iter().collect::<std::collections::BTreeMap<_, _>>())
}

impl AccountState {
    pub fn member(&self, user: &UserId) -> Option<&Membership> {
        self.members.get(user)
    }

    /// R1, R3: `user` may become an owner or a follower.
    pub fn require_active_member(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<&Membership, DomainError> {
        match self.members.get(user) {
            None => Err(DomainError::UnknownUser {
                account: account.clone(),
                user: user.clone(),
            }),
            Some(m) if !m.active => Err(DomainError::InactiveUser(user.clone())),
            Some(m) => Ok(m),
        }
    }
}

/// Account commands come from the system or from an active admin of the account.
fn authorize(cmd: &Command, state: &AccountState) -> Result<(), DomainError> {
    let denied = |why| DomainError::NotPermitted {
        actor: cmd.meta.actor.clone(),
        what: "manage this account's members and settings",
        why,
    };
    match &cmd.meta.actor {
        Actor::System => Ok(()),
        Actor::Workflow { .. } => Err(denied("workflows act on records, not on the account")),
        Actor::User { user } => match state.members.get(user) {
            Some(m) if m.active && m.role == Role::Admin => Ok(()),
            _ => Err(denied("only an active admin of the account may")),
        },
    }
}

/// Decides an account command against the account's state.
pub fn decide(cmd: &Command, state: &AccountState) -> Result<Vec<Event>, DomainError> {
    let account = &cmd.account;
    if let CommandBody::OpenAccount { name, settings } = &cmd.body {
        if !matches!(cmd.meta.actor, Actor::System) {
            return Err(DomainError::NotPermitted {
                actor: cmd.meta.actor.clone(),
                what: "open an account",
                why: "only the system actor opens accounts",
            });
        }
        if state.opened {
            return Err(DomainError::AccountExists(account.clone()));
        }
        return Ok(cmd.meta.events(vec![EventBody::AccountOpened {
            account: account.clone(),
            name: name.clone(),
            settings: settings.apply_to(AccountSettings::default()),
        }]));
    }
    if !state.opened {
        return Err(DomainError::UnknownAccount(account.clone()));
    }
    authorize(cmd, state)?;
    let existing = |user: &UserId| {
        state
            .members
            .get(user)
            .ok_or_else(|| DomainError::UnknownUser {
                account: account.clone(),
                user: user.clone(),
            })
    };
    let body = match &cmd.body {
        CommandBody::RegisterMember {
            user,
            name,
            email,
            role,
            data_scope,
        } => {
            if state.members.contains_key(user) {
                return Err(DomainError::MemberExists(user.clone()));
            }
            Some(EventBody::MemberRegistered {
                user: user.clone(),
                name: name.clone(),
                email: email.clone(),
                role: *role,
                data_scope: *data_scope,
            })
        }
        CommandBody::ChangeMemberRole { user, role } => {
            (existing(user)?.role != *role).then(|| EventBody::MemberRoleChanged {
                user: user.clone(),
                role: *role,
            })
        }
        CommandBody::ChangeMemberDataScope { user, data_scope } => {
            (existing(user)?.data_scope != *data_scope).then(|| EventBody::MemberDataScopeChanged {
                user: user.clone(),
                data_scope: *data_scope,
            })
        }
        CommandBody::DeactivateMember { user } => existing(user)?
            .active
            .then(|| EventBody::MemberDeactivated { user: user.clone() }),
        CommandBody::ReactivateMember { user } => {
            (!existing(user)?.active).then(|| EventBody::MemberReactivated { user: user.clone() })
        }
        CommandBody::ChangeSettings(change) => {
            let settings = change.apply_to(state.settings);
            (settings != state.settings).then_some(EventBody::SettingsChanged { settings })
        }
        other => {
            return Err(DomainError::NotForThisAggregate {
                command: other.name(),
                aggregate: "account",
            });
        }
    };
    Ok(cmd.meta.events(body.into_iter().collect()))
}

/// Applies one event to the account's state. Events of other aggregates are ignored.
pub fn evolve(mut state: AccountState, event: &Event) -> AccountState {
    match &event.body {
        EventBody::AccountOpened { name, settings, .. } => {
            state.opened = true;
            state.name = name.clone();
            state.settings = *settings;
        }
        EventBody::MemberRegistered {
            user,
            name,
            email,
            role,
            data_scope,
        } => {
            state.members.insert(
                user.clone(),
                Membership {
                    name: name.clone(),
                    email: email.clone(),
                    role: *role,
                    data_scope: *data_scope,
                    active: true,
                },
            );
        }
        EventBody::MemberRoleChanged { user, role } => {
            if let Some(m) = state.members.get_mut(user) {
                m.role = *role;
            }
        }
        EventBody::MemberDataScopeChanged { user, data_scope } => {
            if let Some(m) = state.members.get_mut(user) {
                m.data_scope = *data_scope;
            }
        }
        EventBody::MemberDeactivated { user } => {
            if let Some(m) = state.members.get_mut(user) {
                m.active = false;
            }
        }
        EventBody::MemberReactivated { user } => {
            if let Some(m) = state.members.get_mut(user) {
                m.active = true;
            }
        }
        EventBody::SettingsChanged { settings } => state.settings = *settings,
        _ => {}
    }
    state
}
