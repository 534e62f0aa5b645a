#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end in a real browser: the access explorer page (`--ui`) shows the demo account's
//! opportunity as the queries do: its owner, each follower with how it was added (R18), for
//! members the decision and reason `check_access` gives (R19-R21), its history with the sync's
//! causes, and the record as it was at a past position. Headless Chromium
//! (`CHROMIUM_BIN`, installed by scripts/install-chromium, which scripts/test runs) loads the
//! page, runs its script against the projection's HTTP API, and hands back the rendered DOM.
//!
//! With `FOLLOWERS_EXPLORER_SCREENSHOT=<file.png>` it also saves a screenshot of the page there
//! (scripts/explorer-screenshot regenerates docs/explorer.png that way).

use std::path::PathBuf;
use std::process::Command;

use followers_client::Account;
use followers_shared::access::Action;
use followers_shared::model::RecordRef;
use followers_shared::store::Position;
use followers_shared::wire::{FollowersAnswer, RecordHistory};
use followers_tests::stack::{
    contact_ref, opportunity_ref, start_command_service, start_projection_service,
};
use followers_tests::typed::{account, by, change_owner, uid};
use followers_tests::{NatsServer, demo, eventually};

fn chromium() -> PathBuf {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".to_owned());
    let found = Command::new(&bin).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "Chromium is needed (`{bin}` does not run): scripts/install-chromium installs it, and \
         scripts/test runs it before the tests"
    );
    PathBuf::from(bin)
}

/// Loads `url` in headless Chromium, lets its script run (virtual time, up to 10 s, waiting for
/// its requests), and returns the DOM as rendered; with `screenshot`, also saves the page there.
fn render(url: &str, screenshot: Option<&str>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut chrome = Command::new(chromium());
    chrome.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--virtual-time-budget=10000",
        "--window-size=1200,1000",
    ]);
    chrome.arg(format!("--user-data-dir={}", profile.path().display()));
    let mut shot = chrome_screenshot_args(screenshot);
    let output = chrome
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(args) = shot.take() {
        let saved = Command::new(chromium())
            .args(args)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
            .expect("chromium runs");
        assert!(
            saved.status.success(),
            "{}",
            String::from_utf8_lossy(&saved.stderr)
        );
    }
    String::from_utf8(output.stdout).unwrap()
}

fn chrome_screenshot_args(path: Option<&str>) -> Option<Vec<String>> {
    let path = path?;
    Some(
        [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            "--window-size=1200,1000",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--screenshot={path}")])
        .collect(),
    )
}

/// The text of the table row of member `user` (its `data-name` names them), tags removed.
fn member_row<'a>(dom: &'a str, user: &str) -> Vec<&'a str> {
    let row = dom
        .split("<tr data-name=\"")
        .skip(1)
        .find(|row| {
            row.split('"')
                .next()
                .is_some_and(|n| n.ends_with(&format!(" {user}")))
        })
        .unwrap_or_else(|| panic!("no row for {user} in the matrix"));
    let row = row.split("</tr>").next().unwrap();
    row.split("<td class=\"")
        .skip(1)
        .map(|cell| {
            let text = cell.split_once('>').unwrap().1;
            text.split('<').next().unwrap()
        })
        .collect()
}

/// Waits until the follower sync has made the contact's owner the opportunity's owner (R7),
/// and returns a position at which the page shows that.
async fn synced(demo: &Account, renewal: &RecordRef) -> Position {
    let owned_by_bruno = |answer: &FollowersAnswer| {
        answer
            .owner
            .as_ref()
            .is_some_and(|o| o.user.as_str() == "bruno")
    };
    eventually(
        "the sync makes bruno the opportunity's owner (R7)",
        || async { owned_by_bruno(&demo.followers(renewal).await.unwrap()) },
    )
    .await;
    demo.followers(renewal).await.unwrap().position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_shows_a_record_in_a_real_browser() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &["--ui"]).await;
    let demo_account = account(&server, "demo").await;
    demo::load(&demo_account)
        .await
        .expect("a fresh demo account");
    let renewal = opportunity_ref("acme-renewal");
    let at = synced(&demo_account, &renewal).await;

    let url = format!(
        "http://{}/ui/?account=demo&kind=opportunity&id=acme-renewal&min_position={}",
        projection.http_addr, at.0
    );
    let screenshot = std::env::var("FOLLOWERS_EXPLORER_SCREENSHOT").ok();
    let dom = tokio::task::spawn_blocking(move || render(&url, screenshot.as_deref()))
        .await
        .unwrap();
    assert!(
        dom.contains("data-state=\"ready\""),
        "the page did not finish: {dom}"
    );

    // The owner, and each follower with how it was added (R18).
    assert!(dom.contains("Bruno Broker (bruno)"), "{dom}");
    assert!(
        dom.contains("Chen Closer (chen)</a></th><td>added by hand"),
        "{dom}"
    );
    assert!(
        dom.contains("Dana Dispatcher (dana)</a></th><td>added by workflow high-value-deals"),
        "{dom}"
    );

    // Three members' decisions and reasons, as check_access gives them.
    let shown = demo_account.at_least(at);
    let actions = [
        Action::View,
        Action::Edit,
        Action::ManageFollowers,
        Action::ChangeOwner,
    ];
    for user in ["bruno", "chen", "dana"] {
        let cells = member_row(&dom, user);
        assert_eq!(cells.len(), 4, "{user}: {cells:?}");
        for (cell, action) in cells.iter().zip(actions) {
            let a = shown
                .check_access(&uid(user), action, &renewal)
                .await
                .unwrap();
            let word = if a.allowed { "allowed" } else { "denied" };
            let reason = a.reason.to_string().replace('_', " ");
            let expected = format!("{word}: {reason}");
            assert!(
                cell.starts_with(&expected),
                "{user} {action}: page says {cell:?}, check_access {expected:?}"
            );
        }
    }

    // Bruno hands the contact to Chen; owners being coupled, the follower sync mirrors it
    // onto the opportunity (R7). The history shows each event with a link to the record as it
    // was then, and the sync's owner change names its cause.
    let handover = change_owner(contact_ref("acme-corp"), Some("chen"));
    demo_account.command(by("alice"), handover).await.unwrap();
    eventually(
        "the sync makes chen the opportunity's owner (R7)",
        || async {
            let answer = demo_account.followers(&renewal).await.unwrap();
            answer
                .owner
                .as_ref()
                .is_some_and(|o| o.user.as_str() == "chen")
        },
    )
    .await;
    let now = demo_account.followers(&renewal).await.unwrap().position;
    let story = demo_account
        .query(RecordHistory {
            record: renewal.clone(),
            after: None,
            limit: None,
            min_position: Some(now),
        })
        .await
        .unwrap()
        .into_inner();
    let current = format!(
        "http://{}/ui/?account=demo&kind=opportunity&id=acme-renewal&min_position={}",
        projection.http_addr, now.0
    );
    let dom = tokio::task::spawn_blocking(move || render(&current, None))
        .await
        .unwrap();
    for event in &story.events {
        let link = format!(
            "at_position={}\">as of {}</a>",
            event.position.0, event.position.0
        );
        assert!(
            dom.contains(&link),
            "no link to position {}: {dom}",
            event.position.0
        );
    }
    let synced = story
        .events
        .iter()
        .find(|e| e.event_type == "owner_changed")
        .expect("the sync's owner change (R7)");
    let cause = synced
        .cause
        .as_ref()
        .expect("the sync's reaction names its cause");
    assert!(dom.contains("owner bruno → chen"), "{dom}");
    assert!(
        dom.contains(&format!("caused by event {}", cause.event_id)),
        "{dom}"
    );

    // As of the opportunity's creation: Dana, added later by the workflow, did not follow it
    // yet, and the page says it shows a past moment.
    let created = story.events[0].position;
    let past = format!(
        "http://{}/ui/?account=demo&kind=opportunity&id=acme-renewal&at_position={}",
        projection.http_addr, created.0
    );
    let then = tokio::task::spawn_blocking(move || render(&past, None))
        .await
        .unwrap();
    assert!(then.contains("data-state=\"ready\""), "{then}");
    let said = format!("As it was at position {}, a past moment.", created.0);
    assert!(then.contains(&said), "{then}");
    assert!(
        then.contains("Chen Closer (chen)</a></th><td>added by hand"),
        "{then}"
    );
    assert!(
        !then.contains("Dana Dispatcher (dana)</a></th><td>added by"),
        "{then}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_only_with_ui_and_allows_nothing_from_elsewhere() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let without = start_projection_service(&server, &[]).await;
    let with = start_projection_service(&server, &["--ui"]).await;
    let http = reqwest::Client::new();
    let off = http
        .get(format!("http://{}/ui/", without.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404, "off by default");
    for (path, kind) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let on = http
            .get(format!("http://{}{path}", with.http_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(on.status(), 200, "{path}");
        let headers = on.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
            "{policy}"
        );
    }
}
