#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: `who_can_access` and `accessible_records`, the access rule asked the other way
//! round (R19-R21), and the hints of denied checks (how to get the access), over NATS through the typed client and over
//! HTTP, against a real nats-server fed by the command service. Rule numbers refer to
//! docs/rules.md.

use followers_client::{Account, system};
use followers_shared::access::{Action, Reason};
use followers_shared::command::DeactivateMember;
use followers_shared::error::ErrorCode;
use followers_shared::hint::Grant;
use followers_shared::model::RecordRef;
use followers_shared::store::Position;
use followers_shared::wire::{
    AccessAnswer, AccessCheck, AccessibleRecords, AccessibleRecordsAnswer, CheckAccess,
    CheckAccessBatch, QueryReply, WhoCanAccess, WhoCanAccessAnswer,
};
use followers_tests::NatsServer;
use followers_tests::stack::{
    contact_ref as c, opportunity_ref as o, start_command_service, start_projection_service,
};
use followers_tests::typed::{SMALL_TEAM, account, code, small_account, uid};

/// Every page of `who_can_access`, `limit` at a time, from a model at `at` or later.
async fn every_page(
    acme: &Account,
    record: &RecordRef,
    action: Action,
    limit: usize,
    at: Position,
) -> Vec<WhoCanAccessAnswer> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let request = WhoCanAccess {
            record: record.clone(),
            action,
            after,
            limit: Some(limit),
            min_position: Some(at),
            at_position: None,
            at_time: None,
        };
        let page = acme.query(request).await.unwrap().into_inner();
        after = page.next.clone();
        pages.push(page);
        if after.is_none() {
            return pages;
        }
    }
}

fn who(pages: &[WhoCanAccessAnswer]) -> Vec<(&str, Reason)> {
    pages
        .iter()
        .flat_map(|p| &p.users)
        .map(|g| (g.user.as_str(), g.reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_can_access_lists_every_member_allowed_with_check_access_s_reason() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;

    // R20, R21: an admin, the owner, a member with scope `all`, the contact's follower (the
    // account lets contact access reach opportunities) and the follower; two a page.
    let pages = every_page(&acme, &o("o1"), Action::Edit, 2, at).await;
    let expected = [
        ("ann", Reason::Admin),
        ("bob", Reason::Owner),
        ("cid", Reason::AllData),
        ("dee", Reason::ContactFollower),
        ("eve", Reason::Follower),
    ];
    assert_eq!(who(&pages), expected);
    let sizes: Vec<usize> = pages.iter().map(|p| p.users.len()).collect();
    assert_eq!(sizes, [2, 2, 1], "pages of two, in user order");
    // The same members check_access allows, and no other.
    for (user, _, _) in SMALL_TEAM {
        let check = acme
            .at_least(at)
            .check_access(&uid(user), Action::Edit, &o("o1"))
            .await
            .unwrap();
        let listed = expected.iter().find(|(u, _)| u == user).map(|(_, r)| *r);
        assert_eq!(listed, check.allowed.then_some(check.reason), "{user}");
    }

    // R5: only an admin or the owner changes an owned record's owner; anyone with scope `all`
    // an unassigned one's.
    let owned = every_page(&acme, &c("c1"), Action::ChangeOwner, 100, at).await;
    assert_eq!(
        who(&owned),
        [("ann", Reason::Admin), ("bob", Reason::Owner)]
    );
    let unassigned = every_page(&acme, &c("c2"), Action::ChangeOwner, 100, at).await;
    assert_eq!(
        who(&unassigned),
        [("ann", Reason::Admin), ("cid", Reason::AllData)]
    );

    let base = format!("http://{}", projection.http_addr);
    http_answers_the_same(&base, &acme, at).await;

    // R3, R20: a deactivated member leaves every list.
    let deactivated = acme
        .command(system(), DeactivateMember { user: uid("cid") })
        .await
        .unwrap();
    let after = every_page(&acme, &c("c2"), Action::View, 100, deactivated.position()).await;
    assert_eq!(who(&after), [("ann", Reason::Admin)]);

    // An unknown record is refused with its code, not answered with nobody.
    let unknown = acme.query(WhoCanAccess {
        record: c("c9"),
        action: Action::View,
        after: None,
        limit: None,
        min_position: None,
        at_position: None,
        at_time: None,
    });
    assert_eq!(code(unknown.await), ErrorCode::UnknownRecord);
    projection.stop().await;
    commands.stop().await;
}

/// Over HTTP: the same page as over NATS, and refusals with their status and code.
async fn http_answers_the_same(base: &str, acme: &Account, at: Position) {
    let http = reqwest::Client::new();
    let route = format!("{base}/v1/accounts/acme/records/opportunity/o1/access");
    let got: QueryReply<WhoCanAccessAnswer> = http
        .get(format!(
            "{route}?action=edit&limit=2&after=ann&min_position={}",
            at.0
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nats = acme
        .query(WhoCanAccess {
            record: o("o1"),
            action: Action::Edit,
            after: Some(uid("ann")),
            limit: Some(2),
            min_position: Some(at),
            at_position: None,
            at_time: None,
        })
        .await
        .unwrap();
    assert_eq!(got.answer.as_ref(), Some(&nats.answer));
    assert_eq!(nats.answer.next.as_ref().map(|u| u.as_str()), Some("cid"));

    let refused = |query: &'static str, path: &'static str| {
        let http = http.clone();
        let url = format!("{base}/v1/accounts/acme/records/{path}/access?{query}");
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let reply: QueryReply<()> = response.json().await.unwrap();
            (status, reply.error.map(|e| e.code))
        }
    };
    let malformed = Some(ErrorCode::MalformedRequest);
    assert_eq!(refused("limit=5", "opportunity/o1").await, (400, malformed));
    assert_eq!(
        refused("action=edit&limit=0", "opportunity/o1").await,
        (400, malformed)
    );
    assert_eq!(
        refused("action=edit", "contact/c9").await,
        (404, Some(ErrorCode::UnknownRecord))
    );
}

fn check(user: &str, action: Action, record: RecordRef, at: Position) -> CheckAccess {
    CheckAccess {
        user: uid(user),
        action,
        record,
        hint: true,
        min_position: Some(at),
        at_position: None,
        at_time: None,
    }
}

/// R21: a denied check asked for a hint says what would grant the access and whom to ask, over
/// NATS (single and batch) and HTTP; unasked, a denial carries no hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_check_asked_for_a_hint_says_what_would_grant_it_and_whom_to_ask() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;

    // R20: fay holds nothing; bob owns c1 and ann is the admin.
    let denied = acme.query(check("fay", Action::View, c("c1"), at)).await;
    let hint = denied
        .unwrap()
        .into_inner()
        .hint
        .expect("a denial asked for a hint has one");
    assert_eq!(hint.grants, [Grant::AddFollower, Grant::DataScopeAll]);
    assert_eq!(hint.owner.map(|o| o.user), Some(uid("bob")));
    let admins: Vec<_> = hint.admins.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(admins, ["ann"]);
    assert!(
        hint.message.starts_with("ask User bob (owner)"),
        "{}",
        hint.message
    );
    // R5: dee follows c1, and only its owner or an admin can make her the owner.
    let owner_change = acme.query(check("dee", Action::ChangeOwner, c("c1"), at));
    let hint = owner_change
        .await
        .unwrap()
        .into_inner()
        .hint
        .expect("a hint");
    assert_eq!(hint.grants, [Grant::BecomeOwner]);

    // A batch gives each denial its hint, and an allowed check none.
    let checks = ["bob", "fay"]
        .iter()
        .map(|u| AccessCheck {
            user: uid(u),
            action: Action::Edit,
            record: o("o1"),
        })
        .collect();
    let batch = CheckAccessBatch {
        checks,
        hint: true,
        min_position: Some(at),
        at_position: None,
        at_time: None,
    };
    let answers = acme.query(batch).await.unwrap().into_inner();
    let hinted: Vec<bool> = answers.iter().map(|a| a.hint.is_some()).collect();
    assert_eq!(hinted, [false, true]);
    let through_contact = [
        Grant::AddFollower,
        Grant::AddContactFollower,
        Grant::DataScopeAll,
    ];
    assert_eq!(answers[1].hint.as_ref().unwrap().grants, through_contact);

    // Unasked, the same denial carries no hint.
    let mut plain = check("fay", Action::View, c("c1"), at);
    plain.hint = false;
    assert_eq!(acme.query(plain).await.unwrap().into_inner().hint, None);

    // HTTP: the same answer with `hint=true`; a hint that is no boolean is refused.
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/accounts/acme/access", projection.http_addr);
    let url = format!("{base}?user=fay&action=view&kind=contact&id=c1&hint=true");
    let got: QueryReply<AccessAnswer> = http.get(url).send().await.unwrap().json().await.unwrap();
    let nats = acme
        .query(check("fay", Action::View, c("c1"), at))
        .await
        .unwrap();
    assert_eq!(got.answer.as_ref(), Some(&nats.answer));
    let url = format!("{base}?user=fay&action=view&kind=contact&id=c1&hint=yes");
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let refused: QueryReply<()> = response.json().await.unwrap();
    assert_eq!(
        refused.error.map(|e| e.code),
        Some(ErrorCode::MalformedRequest)
    );

    projection.stop().await;
    commands.stop().await;
}

fn reached(answer: &AccessibleRecordsAnswer) -> Vec<(String, Reason)> {
    let records = answer.records.iter();
    records.map(|r| (r.record.to_string(), r.reason)).collect()
}

/// R19-R21 for one user: what they may do an action to, with check_access's reasons, paged
/// in record order; an admin and a member with scope `all` reach every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accessible_records_lists_what_a_user_may_act_on_and_why() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;
    let ask = |user: &str, action, after, limit| AccessibleRecords {
        user: uid(user),
        action,
        after,
        limit,
        min_position: Some(at),
        at_position: None,
        at_time: None,
    };

    // R20: dee follows c1, and so reaches o1 through its contact; one record a page.
    let first = acme.query(ask("dee", Action::Edit, None, Some(1))).await;
    let first = first.unwrap().into_inner();
    let rest = ask("dee", Action::Edit, first.next.clone(), Some(1));
    let second = acme.query(rest).await.unwrap().into_inner();
    let mut all = reached(&first);
    all.extend(reached(&second));
    let c1 = c("c1").to_string();
    let o1 = o("o1").to_string();
    let expected = [
        (c1.clone(), Reason::Follower),
        (o1.clone(), Reason::ContactFollower),
    ];
    assert_eq!(all, expected);
    assert_eq!(second.next, None, "two records in all");
    // R5: no contact grants an owner change; bob owns both.
    let dee = acme
        .query(ask("dee", Action::ChangeOwner, None, None))
        .await;
    assert!(dee.unwrap().records.is_empty());
    let bob = acme
        .query(ask("bob", Action::ChangeOwner, None, None))
        .await;
    let owned = [(c1.clone(), Reason::Owner), (o1.clone(), Reason::Owner)];
    assert_eq!(reached(&bob.unwrap()), owned);

    // R20: an admin reaches every record; scope `all` every record but for owner changes, which
    // it may make only on unassigned records (R5).
    let ann = acme
        .accessible_records(&uid("ann"), Action::ChangeOwner)
        .await;
    assert_eq!(ann.unwrap().every_record, Some(Reason::Admin));
    let cid = acme.accessible_records(&uid("cid"), Action::Edit).await;
    assert_eq!(cid.unwrap().every_record, Some(Reason::AllData));
    let cid = acme
        .query(ask("cid", Action::ChangeOwner, None, None))
        .await;
    let cid = cid.unwrap().into_inner();
    assert_eq!(
        (cid.every_record, cid.unassigned_records),
        (None, Some(Reason::AllData))
    );
    // fay holds nothing and reaches nothing.
    let fay = acme
        .query(ask("fay", Action::View, None, None))
        .await
        .unwrap();
    assert!(fay.every_record.is_none() && fay.records.is_empty());

    // HTTP: the same page, the `after` record in two parameters.
    let url = format!(
        "http://{}/v1/accounts/acme/users/dee/access?action=edit&limit=1&after_kind=contact&after_id=c1&min_position={}",
        projection.http_addr, at.0
    );
    let got: QueryReply<AccessibleRecordsAnswer> =
        reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(got.answer.as_ref(), Some(&second));

    projection.stop().await;
    commands.stop().await;
}
