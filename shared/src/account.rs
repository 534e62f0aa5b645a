//! The account aggregate: its settings (R7-R9, R20) and its memberships (R2, R3).
//!
//! One stream per account. Record decisions read this state as context (is the actor an active
//! member? what do the settings say?) but never write to it.

use crate::command::{AccountCommand, CommandMeta, OpenAccount, RegisterMember};
use crate::error::DomainError;
use crate::event::{Event, EventBody};
use crate::hashing::IdMap;
use crate::ids::{AccountId, UserId};
use crate::model::{AccountSettings, Actor, Membership, Role};

/// Everything known about one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountState {
    pub opened: bool,
    pub name: String,
    pub settings: AccountSettings,
    /// Written in user order, so that the same state always gives the same JSON.
    #[serde(serialize_with = "in_user_order")]
    pub members: IdMap<UserId, Membership>,
}

fn in_user_order<S: serde::Serializer>(
    members: &IdMap<UserId, Membership>,
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
fn authorize(actor: &Actor, state: &AccountState) -> Result<(), DomainError> {
    let denied = |why| DomainError::NotPermitted {
        actor: actor.clone(),
        what: "manage this account's members and settings",
        why,
    };
    match actor {
        Actor::System => Ok(()),
        Actor::Workflow { .. } => Err(denied("workflows act on records, not on the account")),
        Actor::User { user } => match state.members.get(user) {
            Some(m) if m.active && m.role == Role::Admin => Ok(()),
            _ => Err(denied("only an active admin of the account may")),
        },
    }
}

/// Decides an account command against the account's state.
pub fn decide_account(
    account: &AccountId,
    meta: &CommandMeta,
    cmd: &AccountCommand,
    state: &AccountState,
) -> Result<Vec<Event>, DomainError> {
    // Every command but the opening changes an open account, by its manager.
    let manage = || {
        if !state.opened {
            return Err(DomainError::UnknownAccount(account.clone()));
        }
        authorize(&meta.actor, state)
    };
    let member = |user: &UserId| {
        manage()?;
        state
            .members
            .get(user)
            .ok_or_else(|| DomainError::UnknownUser {
                account: account.clone(),
                user: user.clone(),
            })
    };
    let body = match cmd {
        AccountCommand::OpenAccount(c) => Some(open_account(account, &meta.actor, c, state)?),
        AccountCommand::RegisterMember(c) => {
            manage()?;
            Some(register_member(c, state)?)
        }
        AccountCommand::ChangeMemberRole(c) => {
            (member(&c.user)?.role != c.role).then(|| EventBody::MemberRoleChanged {
                user: c.user.clone(),
                role: c.role,
            })
        }
        AccountCommand::ChangeMemberDataScope(c) => (member(&c.user)?.data_scope != c.data_scope)
            .then(|| EventBody::MemberDataScopeChanged {
                user: c.user.clone(),
                data_scope: c.data_scope,
            }),
        AccountCommand::DeactivateMember(c) => {
            (member(&c.user)?.active).then(|| EventBody::MemberDeactivated {
                user: c.user.clone(),
            })
        }
        AccountCommand::ReactivateMember(c) => {
            (!member(&c.user)?.active).then(|| EventBody::MemberReactivated {
                user: c.user.clone(),
            })
        }
        AccountCommand::ChangeSettings(c) => {
            manage()?;
            let settings = c.change.apply_to(state.settings);
            (settings != state.settings).then_some(EventBody::SettingsChanged { settings })
        }
    };
    Ok(meta.events(body.into_iter().collect()))
}

/// Only the system opens an account, once.
fn open_account(
    account: &AccountId,
    actor: &Actor,
    c: &OpenAccount,
    state: &AccountState,
) -> Result<EventBody, DomainError> {
    if !matches!(actor, Actor::System) {
        return Err(DomainError::NotPermitted {
            actor: actor.clone(),
            what: "open an account",
            why: "only the system actor opens accounts",
        });
    }
    if state.opened {
        return Err(DomainError::AccountExists(account.clone()));
    }
    Ok(EventBody::AccountOpened {
        account: account.clone(),
        name: c.name.to_string(),
        settings: c.settings.apply_to(AccountSettings::default()),
    })
}

/// R2: a new membership; a user is a member of an account once.
fn register_member(c: &RegisterMember, state: &AccountState) -> Result<EventBody, DomainError> {
    if state.members.contains_key(&c.user) {
        return Err(DomainError::MemberExists(c.user.clone()));
    }
    Ok(EventBody::MemberRegistered {
        user: c.user.clone(),
        name: c.name.to_string(),
        email: c.email.to_string(),
        role: c.role,
        data_scope: c.data_scope,
    })
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
