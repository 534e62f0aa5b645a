//! The read model's resident memory a record, on the memory row's data (one account, 200
//! members, contacts with an owner and three followers added by an admin; issue 14).
//!
//! `model_bytes apply N FILE`: applies N records' commits, prints the RSS they added a record,
//! and writes the model's snapshot to FILE. `model_bytes load FILE`: reads the snapshot back (a
//! restart) and prints the RSS the model takes a record, counted from before the file is read,
//! and the time from reading the file to the model. Each in its own process, so neither reuses
//! the other's freed memory:
//!
//! `cargo run --release -p followers-shared --example model_bytes -- apply 100000 /tmp/s`, then
//! `... -- load /tmp/s`.
//!
//! `model_bytes apply N FILE commands`: the command service's model instead, which also keeps
//! each stream's chain value and where every stored command is (one command a record here);
//! `load` reads whichever the file holds.
//!
//! `model_bytes ids N map|compact`: the RSS a stored command takes in the command service's
//! memory of command ids alone, as it was kept until issue 14 (`map`: a hash map from id to
//! position per account) and as it is now (`compact`: [`StoredCommands`]).

use followers_shared::command::CommandMeta;
use followers_shared::event::{AddedFollower, EventBody};
use followers_shared::ids::{AccountId, CommandId, ContactId, UserId};
use followers_shared::model::{Actor, AddedHow, RecordRef};
use followers_shared::read_model::{Chains, ReadModel};
use followers_shared::store::{Commit, Position, StoredCommit, StreamId, Version};
use followers_shared::stored_commands::StoredCommands;
use std::collections::HashMap;

/// This process's resident set, in bytes.
fn rss() -> f64 {
    status_kb("VmRSS:") * 1024.0
}

/// This process's largest resident set so far, in bytes.
fn peak_rss() -> f64 {
    status_kb("VmHWM:") * 1024.0
}

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("a field in kB")
}

const USERS: u64 = 200;
const FOLLOWERS: u64 = 3;

fn commit(account: &AccountId, i: u64) -> StoredCommit {
    let user = |u: u64| UserId::new(format!("u-{u}")).expect("valid id");
    let contact = ContactId::new(format!("c-{i}")).expect("valid id");
    let record = RecordRef::Contact(contact.clone());
    let owner = i % USERS;
    let followers = (1..=FOLLOWERS)
        .map(|k| AddedFollower {
            user: user((owner + k * 7) % USERS),
            how: AddedHow::Manual,
            until: None,
        })
        .collect();
    let meta = CommandMeta {
        command_id: CommandId::new(),
        actor: Actor::User {
            user: UserId::new("admin").expect("valid id"),
        },
        caller: None,
        correlation: uuid::Uuid::now_v7(),
        causation: None,
        at: chrono::Utc::now(),
    };
    let bodies = vec![
        EventBody::ContactCreated {
            contact,
            owner: Some(user(owner)),
        },
        EventBody::FollowersAdded {
            record: record.clone(),
            followers,
        },
    ];
    StoredCommit {
        stream: StreamId::record(account.clone(), record),
        version: Version(1),
        position: Position(i + 1),
        // Sealed, so that a model keeping chain values (the command service's) keeps one.
        commit: Commit::sealed(meta.command_id, meta.events(bodies), None),
        trace: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["apply", n, file] => apply(n.parse().expect("a number of records"), file, false),
        ["apply", n, file, "commands"] => {
            apply(n.parse().expect("a number of records"), file, true);
        }
        ["load", file] => load(file),
        ["ids", n, how] => ids(n.parse().expect("a number of commands"), how),
        _ => {
            eprintln!("usage: model_bytes apply N FILE [commands] | load FILE | ids N map|compact")
        }
    }
}

fn apply(records: u64, file: &str, commands: bool) {
    let account: AccountId = "big".parse().expect("valid id");
    let before = rss();
    let mut model = if commands {
        ReadModel::tracking_commands()
    } else {
        ReadModel::with_chains(Chains::Dropped)
    };
    // Each commit made and dropped in turn, so that only the model stays.
    for i in 0..records {
        model.apply(&commit(&account, i));
    }
    let applied = rss() - before;
    let started = std::time::Instant::now();
    let bytes = followers_shared::snapshot::encode(&model.to_snapshot()).expect("encodes");
    let secs = started.elapsed().as_secs_f64();
    std::fs::write(file, &bytes).expect("writes the snapshot");
    println!(
        "{records} records applied: {:.0} bytes a record of RSS; snapshot {} bytes, encoded in \
         {secs:.2} s",
        applied / records as f64,
        bytes.len()
    );
}

fn ids(commands: u64, how: &str) {
    let account: AccountId = "big".parse().expect("valid id");
    let before = rss();
    let mut map: HashMap<AccountId, HashMap<CommandId, Position>> = HashMap::new();
    let mut compact = StoredCommands::default();
    for i in 1..=commands {
        let id = CommandId::new();
        match how {
            "map" => {
                map.entry(account.clone())
                    .or_default()
                    .insert(id, Position(i));
            }
            _ => compact.insert(&account, &id, Position(i)),
        }
    }
    let held = map.values().map(HashMap::len).sum::<usize>() + compact.len();
    println!(
        "{held} command ids ({how}): {:.1} bytes a command of RSS",
        (rss() - before) / commands as f64
    );
}

fn load(file: &str) {
    // From before the file is read: its bytes are freed before the model is measured, and must
    // not count against it.
    let before = rss();
    let started = std::time::Instant::now();
    let bytes = std::fs::read(file).expect("reads the snapshot");
    let snapshot = followers_shared::snapshot::decode(&bytes).expect("decodes");
    let model = ReadModel::from_snapshot(snapshot);
    let secs = started.elapsed().as_secs_f64();
    drop(bytes);
    let records: usize = model.accounts().map(|(_, a)| a.records.len()).sum();
    println!(
        "{records} records loaded in {secs:.2} s (reading the file included): {:.0} bytes a \
         record of RSS (peak {:.0}; commands tracked: {})",
        (rss() - before) / records as f64,
        (peak_rss() - before) / records as f64,
        model.tracks_commands()
    );
}
