//! The follower sync's reactions (R7-R10), as a pure function: given a stored commit and the
//! current model, which commands follow from it.
//!
//! The process that runs this (in the command service) feeds it every commit in order and sends
//! the commands it returns. Each command's id is derived from the triggering event and the
//! reaction, so running the same reaction twice (after a crash, or on two instances) applies it
//! once; each names the triggering event as its cause.
//!
//! Reactions:
//! - owners coupled (R7): a contact's new owner is mirrored onto each of its opportunities; an
//!   opportunity's new owner, set directly, is mirrored onto its contact (which then mirrors it
//!   onto the other opportunities). Mirrored changes of opportunities are not mirrored back, so
//!   the cascade ends. Turning coupling on aligns every opportunity with its contact.
//! - R8 (decoupled): an opportunity's new owner follows its contact; the previous owner stops
//!   following it if that record's owner sync had added them. A new opportunity created with an
//!   owner counts as an owner change from unassigned.
//! - R9 (decoupled): a contact's new owner follows each of its opportunities; the previous owner
//!   stops following those where that contact's owner sync had added them. A new opportunity
//!   gets its contact's owner as a follower.
//! - R8 and R9 replace their own entry: the removal of the previous owner is sent before the
//!   addition of the new one, so a record that is full only because of that entry still gets
//!   the new owner.
//! - R10 is the decider's part: a `SyncFollower` that would break a rule records a skip instead.

use chrono::{DateTime, Utc};

use crate::command::{AlignOwner, Command, CommandMeta, SyncCommand, SyncFollower};
use crate::event::{Event, EventBody, SyncAction};
use crate::ids::{AccountId, CommandId, ContactId, OpportunityId, UserId};
use crate::model::{Actor, RecordRef};
use crate::read_model::{AccountEntry, ReadModel};
use crate::store::StoredCommit;

/// The commands that follow from `stored`, decided against `model` (which has applied it).
pub fn reactions(model: &ReadModel, stored: &StoredCommit, at: DateTime<Utc>) -> Vec<Command> {
    let account = &stored.stream.account;
    let Some(entry) = model.account(account) else {
        return Vec::new();
    };
    let mut out = Reactions {
        account,
        at,
        commands: Vec::new(),
    };
    for event in &stored.commit.events {
        out.react(entry, event);
    }
    out.commands
}

struct Reactions<'a> {
    account: &'a AccountId,
    at: DateTime<Utc>,
    commands: Vec<Command>,
}

impl Reactions<'_> {
    fn push(&mut self, trigger: &Event, body: impl Into<SyncCommand>) {
        let body = body.into();
        let purpose = purpose(&body);
        self.commands.push(Command {
            account: self.account.clone(),
            meta: CommandMeta {
                command_id: CommandId::derive(trigger.meta.event_id, &purpose),
                actor: Actor::System,
                caller: None,
                correlation: trigger.meta.correlation,
                causation: Some(trigger.meta.event_id),
                at: self.at,
            },
            body: body.into(),
            dry_run: false,
        });
    }

    fn sync_pair(
        &mut self,
        trigger: &Event,
        target: RecordRef,
        source: &RecordRef,
        from: Option<&UserId>,
        to: Option<&UserId>,
    ) {
        // The sync replaces its own entry (R8, R9): the previous owner's entry goes first, so a
        // record full only because of it still gets the new owner. The commands are sent in
        // this order, one after the other.
        if let Some(from) = from.filter(|f| Some(*f) != to) {
            self.push(
                trigger,
                SyncFollower {
                    record: target.clone(),
                    user: from.clone(),
                    action: SyncAction::Remove,
                    trigger: source.clone(),
                },
            );
        }
        if let Some(to) = to {
            self.push(
                trigger,
                SyncFollower {
                    record: target,
                    user: to.clone(),
                    action: SyncAction::Add,
                    trigger: source.clone(),
                },
            );
        }
    }

    /// What follows from one event: owner changes and new opportunities (R7-R9), and coupling
    /// turned on (R7).
    fn react(&mut self, entry: &AccountEntry, event: &Event) {
        match &event.body {
            EventBody::OwnerChanged {
                record: contact @ RecordRef::Contact(_),
                from,
                to,
                ..
            } => self.contact_owner_changed(entry, event, contact, from.as_ref(), to.as_ref()),
            EventBody::OwnerChanged {
                record: opp @ RecordRef::Opportunity(_),
                from,
                to,
                coupled_with,
            } => {
                let mirrored = coupled_with.is_some();
                self.opportunity_owner_changed(
                    entry,
                    event,
                    opp,
                    from.as_ref(),
                    to.as_ref(),
                    mirrored,
                );
            }
            EventBody::OpportunityCreated {
                opportunity,
                contact,
                owner,
            } => self.opportunity_created(entry, event, opportunity, contact, owner.as_ref()),
            EventBody::SettingsChanged { settings } if settings.owners_coupled() => {
                self.align_all(entry, event);
            }
            _ => {}
        }
    }

    /// A contact's new owner: coupled (R7), every opportunity takes it; decoupled with R9 on, it
    /// follows every opportunity in place of the previous owner.
    fn contact_owner_changed(
        &mut self,
        entry: &AccountEntry,
        event: &Event,
        contact: &RecordRef,
        from: Option<&UserId>,
        to: Option<&UserId>,
    ) {
        let settings = entry.state.settings;
        for o in opportunities(entry, contact) {
            let opp = RecordRef::Opportunity(o.clone());
            if settings.owners_coupled() {
                // Every opportunity, even one that has this owner now: an alignment still in
                // flight (an earlier change not yet mirrored) may change it before this one is
                // decided, and this one, the latest, must win (R7). The decider appends nothing
                // where the owner already matches.
                self.push(
                    event,
                    AlignOwner {
                        record: opp,
                        owner: to.cloned(),
                        with: contact.clone(),
                    },
                );
            } else if settings.syncs_opportunity_follower_with_contact_owner() {
                self.sync_pair(event, opp, contact, from, to);
            }
        }
    }

    /// An opportunity's new owner: coupled (R7), its contact takes it unless the change was
    /// itself a mirror (so the cascade ends); decoupled with R8 on, it follows the contact in
    /// place of the previous owner.
    fn opportunity_owner_changed(
        &mut self,
        entry: &AccountEntry,
        event: &Event,
        opp: &RecordRef,
        from: Option<&UserId>,
        to: Option<&UserId>,
        mirrored: bool,
    ) {
        let Some(contact) = entry
            .records
            .get(opp)
            .and_then(|r| r.contact().cloned())
            .map(RecordRef::Contact)
        else {
            return;
        };
        let settings = entry.state.settings;
        if settings.owners_coupled() {
            if !mirrored {
                self.push(
                    event,
                    AlignOwner {
                        record: contact,
                        owner: to.cloned(),
                        with: opp.clone(),
                    },
                );
            }
        } else if settings.syncs_contact_follower_with_opportunity_owner() {
            self.sync_pair(event, contact, opp, from, to);
        }
    }

    /// A new opportunity: with R8 on, its owner follows the contact (an owner change from
    /// unassigned); with R9 on, its contact's owner follows it.
    fn opportunity_created(
        &mut self,
        entry: &AccountEntry,
        event: &Event,
        opportunity: &OpportunityId,
        contact: &ContactId,
        owner: Option<&UserId>,
    ) {
        let settings = entry.state.settings;
        let opp = RecordRef::Opportunity(opportunity.clone());
        let contact = RecordRef::Contact(contact.clone());
        if settings.syncs_contact_follower_with_opportunity_owner() && owner.is_some() {
            self.sync_pair(event, contact.clone(), &opp, None, owner);
        }
        if settings.syncs_opportunity_follower_with_contact_owner() {
            let contact_owner = entry.records.get(&contact).and_then(|c| c.owner());
            self.sync_pair(event, opp, &contact, None, contact_owner);
        }
    }

    /// Coupling is (still) on: every opportunity takes its contact's owner.
    fn align_all(&mut self, entry: &AccountEntry, event: &Event) {
        let mut contacts: Vec<(&ContactId, crate::records::Record<'_>)> = entry
            .records
            .iter()
            .filter_map(|(r, e)| match r {
                RecordRef::Contact(c) if e.created() => Some((c, e)),
                _ => None,
            })
            .collect();
        contacts.sort_by(|a, b| a.0.cmp(b.0));
        for (c, contact) in contacts {
            for o in contact.opportunities {
                let opp = RecordRef::Opportunity(o.clone());
                let owner = entry.records.get(&opp).and_then(|r| r.owner());
                if owner != contact.owner() {
                    self.push(
                        event,
                        AlignOwner {
                            record: opp,
                            owner: contact.owner().cloned(),
                            with: RecordRef::Contact(c.clone()),
                        },
                    );
                }
            }
        }
    }
}

/// What a reaction does, as stable tokens: with the triggering event, it makes the reaction's
/// command id. It must never change for a reaction already in some history, or re-running that
/// reaction (after a crash, on another instance) would look new: so it is spelled out here, never
/// taken from `Debug` output. (These are the strings the first version produced.)
pub fn purpose(cmd: &SyncCommand) -> String {
    let record = |r: &RecordRef| format!("{}:{}", r.kind().as_str(), r.id());
    match cmd {
        SyncCommand::AlignOwner(AlignOwner { record: r, .. }) => format!("align:{}", record(r)),
        SyncCommand::SyncFollower(SyncFollower {
            record: r,
            user,
            action,
            ..
        }) => {
            let action = match action {
                SyncAction::Add => "Add",
                SyncAction::Remove => "Remove",
            };
            format!("sync:{}:{user}:{action}", record(r))
        }
        // Not a reaction: its id is derived in `crate::expiry::command_id`.
        SyncCommand::ExpireFollower(crate::command::ExpireFollower {
            record: r,
            user,
            until,
        }) => format!("expire:{}:{user}:{}", record(r), until.to_rfc3339()),
    }
}

fn opportunities<'a>(
    entry: &'a AccountEntry,
    contact: &RecordRef,
) -> impl Iterator<Item = &'a OpportunityId> {
    entry
        .records
        .get(contact)
        .into_iter()
        .flat_map(|c| c.opportunities.iter())
}
