//! The feed of access changes: which events change who may do what (R19-R21), and which of them
//! a reader asking about one record or one user wants.
//!
//! The feed is the history itself, narrowed: each change is a stored event with its position, so
//! a reader that resumes after the last position it saw misses nothing and sees nothing twice.
//! Two events never change access and are left out: `account_opened` (nobody is a member yet)
//! and `follower_sync_skipped` (the sync recorded that it changed nothing, R10). A follower's
//! `until` being set or moved (`follower_until_changed`) is kept: it says when access will end.
//!
//! What a filter keeps (both must hold when both are given):
//! - **a record**: the events about the record, and for an opportunity also those about its
//!   contact (R20: contact access reaches its opportunities); plus every account-wide event
//!   (members, settings), since each may change who can access the record;
//! - **a user**: the events that name the user (as a member, an owner on either side of a change,
//!   a follower added or removed, the owner of a new record); plus settings changes, which change
//!   access for everyone (R7, R20).

use crate::event::EventBody;
use crate::ids::{ContactId, UserId};
use crate::model::RecordRef;

/// Whether `body` may change anybody's access.
pub fn changes_access(body: &EventBody) -> bool {
    !matches!(
        body,
        EventBody::AccountOpened { .. } | EventBody::FollowerSyncSkipped { .. }
    )
}

/// What one reader of the feed asks about. Stateful only in one way: it learns an opportunity's
/// contact from the opportunity's creation, if it was not known when the reader started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    record: Option<RecordRef>,
    /// The contact of `record` when it is an opportunity.
    contact: Option<ContactId>,
    user: Option<UserId>,
}

impl ChangeFilter {
    /// A filter on `record` (whose contact is `contact`, for an opportunity, if known) and on
    /// `user`; neither given keeps every change.
    pub fn new(
        record: Option<RecordRef>,
        contact: Option<ContactId>,
        user: Option<UserId>,
    ) -> Self {
        Self {
            record,
            contact,
            user,
        }
    }

    /// Whether the reader wants the event `body`.
    pub fn keeps(&mut self, body: &EventBody) -> bool {
        self.learn(body);
        changes_access(body) && self.keeps_for_record(body) && self.keeps_for_user(body)
    }

    fn learn(&mut self, body: &EventBody) {
        if let EventBody::OpportunityCreated {
            opportunity,
            contact,
            ..
        } = body
            && self.record == Some(RecordRef::Opportunity(opportunity.clone()))
        {
            self.contact = Some(contact.clone());
        }
    }

    fn keeps_for_record(&self, body: &EventBody) -> bool {
        let Some(wanted) = &self.record else {
            return true;
        };
        match about_record(body) {
            None => true,
            Some(record) => {
                record == *wanted
                    || matches!((&record, &self.contact),
                        (RecordRef::Contact(c), Some(contact)) if c == contact)
            }
        }
    }

    fn keeps_for_user(&self, body: &EventBody) -> bool {
        let Some(user) = &self.user else {
            return true;
        };
        match body {
            EventBody::SettingsChanged { .. } => true,
            EventBody::MemberRegistered { user: u, .. }
            | EventBody::MemberRoleChanged { user: u, .. }
            | EventBody::MemberDataScopeChanged { user: u, .. }
            | EventBody::MemberDeactivated { user: u }
            | EventBody::MemberReactivated { user: u } => u == user,
            EventBody::ContactCreated { owner, .. }
            | EventBody::OpportunityCreated { owner, .. } => owner.as_ref() == Some(user),
            EventBody::OwnerChanged { from, to, .. } => {
                from.as_ref() == Some(user) || to.as_ref() == Some(user)
            }
            EventBody::FollowersAdded { followers, .. } => {
                followers.iter().any(|f| &f.user == user)
            }
            EventBody::FollowersRemoved { users, .. } => users.contains(user),
            EventBody::FollowerUntilChanged { user: u, .. }
            | EventBody::FollowerExpired { user: u, .. } => u == user,
            EventBody::AccountOpened { .. } | EventBody::FollowerSyncSkipped { .. } => false,
        }
    }
}

/// The record an event is about; `None` for the account's own events.
fn about_record(body: &EventBody) -> Option<RecordRef> {
    match body {
        EventBody::ContactCreated { contact, .. } => Some(RecordRef::Contact(contact.clone())),
        EventBody::OpportunityCreated { opportunity, .. } => {
            Some(RecordRef::Opportunity(opportunity.clone()))
        }
        EventBody::OwnerChanged { record, .. }
        | EventBody::FollowersAdded { record, .. }
        | EventBody::FollowersRemoved { record, .. }
        | EventBody::FollowerUntilChanged { record, .. }
        | EventBody::FollowerExpired { record, .. }
        | EventBody::FollowerSyncSkipped { record, .. } => Some(record.clone()),
        EventBody::AccountOpened { .. }
        | EventBody::MemberRegistered { .. }
        | EventBody::MemberRoleChanged { .. }
        | EventBody::MemberDataScopeChanged { .. }
        | EventBody::MemberDeactivated { .. }
        | EventBody::MemberReactivated { .. }
        | EventBody::SettingsChanged { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AddedFollower;
    use crate::model::{AccountSettings, AddedHow};

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }
    fn contact(id: &str) -> RecordRef {
        RecordRef::Contact(ContactId::new(id).unwrap())
    }
    fn opportunity(id: &str) -> RecordRef {
        RecordRef::Opportunity(crate::ids::OpportunityId::new(id).unwrap())
    }
    fn added(record: RecordRef, u: &str) -> EventBody {
        EventBody::FollowersAdded {
            record,
            followers: vec![AddedFollower {
                until: None,
                user: user(u),
                how: AddedHow::Manual,
            }],
        }
    }

    #[test]
    fn an_opportunitys_filter_keeps_its_contacts_changes_once_it_learns_the_contact() {
        let mut f = ChangeFilter::new(Some(opportunity("o1")), None, None);
        assert!(
            !f.keeps(&added(contact("c1"), "bea")),
            "c1 is not known yet"
        );
        assert!(f.keeps(&EventBody::OpportunityCreated {
            opportunity: crate::ids::OpportunityId::new("o1").unwrap(),
            contact: ContactId::new("c1").unwrap(),
            owner: None,
        }));
        assert!(
            f.keeps(&added(contact("c1"), "bea")),
            "R20: contact access reaches o1"
        );
        assert!(!f.keeps(&added(contact("c2"), "bea")));
        assert!(f.keeps(&EventBody::MemberDeactivated { user: user("bea") }));
    }

    #[test]
    fn a_users_filter_keeps_what_names_the_user_and_settings() {
        let mut f = ChangeFilter::new(None, None, Some(user("bea")));
        assert!(f.keeps(&added(contact("c1"), "bea")));
        assert!(!f.keeps(&added(contact("c1"), "cid")));
        assert!(f.keeps(&EventBody::OwnerChanged {
            record: contact("c1"),
            from: Some(user("bea")),
            to: None,
            coupled_with: None,
        }));
        assert!(!f.keeps(&EventBody::MemberDeactivated { user: user("cid") }));
        assert!(f.keeps(&EventBody::SettingsChanged {
            settings: AccountSettings::default()
        }));
    }

    #[test]
    fn events_that_change_nobodys_access_are_left_out() {
        let mut f = ChangeFilter::default();
        assert!(!f.keeps(&EventBody::FollowerSyncSkipped {
            record: contact("c1"),
            user: user("bea"),
            action: crate::event::SyncAction::Add,
            reason: crate::model::SkipReason::AlreadyOwner,
            trigger: opportunity("o1"),
        }));
        assert!(f.keeps(&added(contact("c1"), "bea")));
    }
}
