#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every JSON example of docs/protocol.md, validated against its schema in docs/schemas/
//! (`followers_shared::wire::schema`).
//!
//! The examples are found as tests/tests/protocol_examples.rs finds them, with the same labels:
//! every JSON value of a ```json block or of an inline code span, and every `$ curl` of a
//! ```console block, is the n-th item of its section (`3.12#2`); a row of an access table is
//! `<section>#row<n>`. Which schema an example belongs to comes from its shape and its section:
//! - a command request (`command_id` and `actor`, no `ok`): the command its section's heading
//!   names (3.5 to 3.16 and 3.18; in 3.17, and for 3.18's add, the command [`QUERY_OF`] names), checked against the subject
//!   of "Request on `…`" where the doc gives one;
//! - a command reply (`ok` and `command_id`): `replies/command.json`;
//! - a query request (no `ok`) or reply (`ok`, no `command_id`): the query its section's heading
//!   names (5.3 to 5.12), or for sections 2.2, 5.1, 5.2 and 5.13 the query of [`QUERY_OF`];
//! - a stored commit (`command_id` and `events`) and an event (`v`, `meta`, `type`): the history's;
//! - a curl: its body (`-d`) against the request and its JSON output against the reply of the
//!   query its route names (docs/protocol.md 6.1);
//! - a part of a larger value ([`FRAGMENTS`], the access table's answers): the definition of
//!   that part inside a schema.
//!
//! Examples that are no part of the wire contract are listed in [`SKIPPED`] with the reason. An
//! example that fits none of these fails the test, so a new example gets its place here.
//!
//! The doc shows the refusals of malformed requests with their replies only. Each such reply must
//! have its request in [`invalid_requests`] (or be in [`INVALID_SKIPPED`] with the reason): that
//! request must fail its schema, and the parser must refuse it with the doc's very message, which
//! ties it to the refusal shown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::Utc;
use followers_shared::wire::{COMMAND_NAMES, Query, parse_command, schema};
use serde_json::{Value, json};

/// The query of a reply in a section that names none.
const QUERY_OF: &[(&str, &str)] = &[
    ("2.2#1", "account"),
    ("5.1#2", "check_access"),
    ("5.1#3", "followers"),
    ("5.2#1", "account"),
    ("5.1#1", "account"),
    // Section 5.13 (past moments) is about every query; its examples are these.
    ("5.13#1", "followers"),
    ("5.13#2", "followers"),
    ("5.13#3", "check_access"),
    ("5.13#4", "check_access"),
    ("5.13#5", "followers"),
    ("5.13#6", "followers"),
    ("5.13#7", "followers"),
    // Section 3.17 (dry runs) is about every command; its requests are these.
    ("3.17#1", "change_owner"),
    ("3.17#3", "deactivate_member"),
    // Section 3.18 (followers until a date) starts with an add that gives an `until`.
    ("3.18#1", "add_followers"),
];

/// Parts of larger values: the label, the schema file and the definition in it.
const FRAGMENTS: &[(&str, &str, &str)] = &[
    ("1.4#1", "commands/change_owner.json", "RecordRef"),
    ("1.4#2", "commands/change_owner.json", "RecordRef"),
    ("4.4#4", "history/event.json", "AddedFollower"),
    ("5.8#3", "replies/account.json", "MemberView"),
];

/// Examples that are not part of the wire contract, and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "2.4#1",
        "the caller policy is the command service's configuration, not a message",
    ),
    ("6.4#1", "/health answers `ok` as text, no JSON to validate"),
    (
        "6.4#2",
        "/ready's `{\"position\", \"ready\"}` is the HTTP API's own, described in openapi.json",
    ),
    ("6.4#3", "/metrics answers Prometheus text, no JSON"),
    (
        "6.5#1",
        "the claims of a bearer token, issued by the caller's identity provider",
    ),
    ("6.5#6", "a CORS preflight: headers only, no JSON"),
    (
        "4.5#1",
        "a follower_expired event's own fields, without `v` and `meta`: history/event.json has the whole event",
    ),
];

/// Refusals of malformed requests whose request no body schema can judge, and why.
const INVALID_SKIPPED: &[(&str, &str)] = &[
    (
        "3.18#7",
        "an `until` for a user `users` does not name: a relation between two fields, refused by the parser, not stated by the schema",
    ),
    (
        "2.2#1",
        "the bad id is the account token of the subject, not in the body",
    ),
    (
        "6.3#9",
        "HTTP query parameters, read by the projection's HTTP layer into the request",
    ),
    (
        "6.3#10",
        "HTTP query parameters, read by the projection's HTTP layer into the request",
    ),
    (
        "6.3#11",
        "HTTP path segments, read by the projection's HTTP layer into the request",
    ),
];

// ---------------------------------------------------------------------------------------------
// Extraction (as in tests/tests/protocol_examples.rs, JSON only)

#[derive(Debug, Clone)]
enum Item {
    Json(Value),
    /// A curl: its URL, its body and the JSON of its output, if any.
    Curl {
        url: String,
        body: Option<Value>,
        output: Option<Value>,
    },
    /// The answer of an access table's row.
    Row(Value),
}

#[derive(Debug, Clone)]
struct Shown {
    label: String,
    section: String,
    line: usize,
    item: Item,
    /// The paragraph before the code block, or around the inline span.
    context: String,
}

/// Walks the document line by line, collecting its examples.
#[derive(Default)]
struct Extractor {
    out: Vec<Shown>,
    /// The title of each section (`"3.12" -> "create_contact"`).
    titles: BTreeMap<String, String>,
    section: String,
    counter: BTreeMap<String, usize>,
    para: Vec<String>,
    para_line: usize,
    last_para: String,
}

impl Extractor {
    fn push(&mut self, line: usize, item: Item, context: String) {
        // Table rows are counted apart (`5.3#row2`), so that they do not shift the others.
        let row = if matches!(item, Item::Row(_)) {
            "row"
        } else {
            ""
        };
        let n = self
            .counter
            .entry(format!("{}#{row}", self.section))
            .or_default();
        *n += 1;
        self.out.push(Shown {
            label: format!("{}#{row}{n}", self.section),
            section: self.section.clone(),
            line,
            item,
            context,
        });
    }

    /// A paragraph ends: its inline code spans that are JSON objects are examples.
    fn end_paragraph(&mut self) {
        let text = self.para.join(" ");
        for span in text.split('`').skip(1).step_by(2) {
            if span.starts_with('{')
                && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(span)
            {
                self.push(self.para_line, Item::Json(v), text.clone());
            }
        }
        self.last_para = text;
        self.para.clear();
    }

    /// A code block of `lang`, its lines starting at the 0-based line `start`.
    fn code_block(&mut self, lang: &str, block: &[&str], start: usize) {
        let context = std::mem::take(&mut self.last_para);
        match lang {
            "json" => {
                let body = block.join("\n");
                for v in serde_json::Deserializer::from_str(&body).into_iter::<Value>() {
                    let v = v.unwrap_or_else(|e| panic!("json block at line {start}: {e}"));
                    self.push(start, Item::Json(v), context.clone());
                }
            }
            "console" => {
                for (line, item) in curls(block, start) {
                    self.push(line, item, context.clone());
                }
            }
            _ => {}
        }
    }

    fn line(&mut self, i: usize, t: &str) {
        if t.starts_with('|')
            && let Some(answer) = access_answer(t)
        {
            self.push(i + 1, Item::Row(answer), String::new());
        }
        if let Some(heading) = t.strip_prefix('#') {
            let mut words = heading.trim_start_matches('#').split_whitespace();
            self.section = words.next().unwrap_or("").trim_end_matches('.').to_owned();
            let title = words.collect::<Vec<_>>().join(" ");
            self.titles.insert(self.section.clone(), title);
            self.last_para.clear();
        } else if !ends_paragraph(t) {
            if self.para.is_empty() {
                self.para_line = i + 1;
            }
            self.para.push(t.to_owned());
        }
    }
}

fn ends_paragraph(t: &str) -> bool {
    t.is_empty() || t.starts_with('#') || t.starts_with('|') || t.starts_with("```")
}

/// The document's examples and the title of each section (`"3.12" -> "create_contact"`).
fn extract(doc: &str) -> (Vec<Shown>, BTreeMap<String, String>) {
    let lines: Vec<&str> = doc.lines().collect();
    let mut x = Extractor {
        section: "0".to_owned(),
        ..Extractor::default()
    };
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if ends_paragraph(t) && !x.para.is_empty() {
            x.end_paragraph();
        }
        if let Some(lang) = t.strip_prefix("```") {
            let start = i + 1;
            let end = start
                + lines[start..]
                    .iter()
                    .position(|l| l.trim() == "```")
                    .unwrap();
            x.code_block(lang.trim(), &lines[start..end], start);
            i = end + 1;
            continue;
        }
        x.line(i, t);
        i += 1;
    }
    (x.out, x.titles)
}

/// The answer cell of a row `| question | `{"allowed": …}` |`.
fn access_answer(row: &str) -> Option<Value> {
    let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
    let [_, answer] = cells.as_slice() else {
        return None;
    };
    let answer: Value = serde_json::from_str(answer.strip_prefix('`')?.strip_suffix('`')?).ok()?;
    answer.get("allowed")?;
    Some(answer)
}

/// The `$ curl` commands of a console block (`first`: the 0-based line of its first line).
fn curls(lines: &[&str], first: usize) -> Vec<(usize, Item)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(cmd) = lines[i].trim().strip_prefix("$ ") else {
            i += 1;
            continue;
        };
        let line = first + i + 1;
        let mut cmd = cmd.to_owned();
        while cmd.ends_with('\\') {
            cmd.pop();
            i += 1;
            cmd.push_str(lines[i].trim());
        }
        i += 1;
        // The output: up to the next command; its JSON is the line that starts with `{`, less
        // the status that `-w ' %{http_code}\n'` appends.
        let mut output = None;
        while i < lines.len() && !lines[i].trim().starts_with("$ ") {
            let l = lines[i].trim();
            if l.starts_with('{') {
                let json = l
                    .rsplit_once("} ")
                    .map_or(l.to_owned(), |(j, _)| format!("{j}}}"));
                output = Some(serde_json::from_str(&json).unwrap_or_else(|e| {
                    panic!("line {}: curl output is not JSON: {e}", first + i + 1)
                }));
            }
            i += 1;
        }
        let url = cmd
            .split_whitespace()
            .map(|w| w.trim_matches('\''))
            .find(|w| w.starts_with("http"))
            .unwrap_or_else(|| panic!("line {line}: a curl without URL"))
            .to_owned();
        let body = cmd.split_once("-d '").map(|(_, rest)| {
            let body = rest.split('\'').next().unwrap();
            serde_json::from_str(body).unwrap_or_else(|e| panic!("line {line}: body: {e}"))
        });
        out.push((line, Item::Curl { url, body, output }));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Schemas

struct Schemas(BTreeMap<String, Value>);

impl Schemas {
    fn load() -> Self {
        Self(
            schema::files()
                .into_iter()
                .map(|(path, text)| (path, serde_json::from_str(&text).unwrap()))
                .collect(),
        )
    }

    /// The errors of `value` against schema file `path`, or against its definition `def`.
    fn errors(&self, path: &str, def: Option<&str>, value: &Value) -> Vec<String> {
        let mut schema = self.0.get(path).unwrap_or_else(|| panic!("{path}")).clone();
        if let Some(def) = def {
            schema = json!({"$ref": format!("#/$defs/{def}"), "$defs": schema["$defs"]});
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        validator
            .iter_errors(value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}

/// What one example is checked against.
#[derive(Debug, PartialEq)]
enum Target {
    /// A schema file, or a definition in it.
    Schema(String, Option<&'static str>),
    Skipped(&'static str),
}

fn schema(path: impl Into<String>) -> Target {
    Target::Schema(path.into(), None)
}

fn listed<'a>(table: &'a [(&str, &str)], label: &str) -> Option<&'a str> {
    table.iter().find(|(l, _)| *l == label).map(|(_, v)| *v)
}

/// The command or query named by the heading of `section` (`3.12 create_contact`).
fn named_by_heading<'a>(titles: &'a BTreeMap<String, String>, section: &str) -> Option<&'a str> {
    let title = titles.get(section)?.as_str();
    (COMMAND_NAMES.contains(&title) || Query::NAMES.contains(&title)).then_some(title)
}

/// Which schema a JSON value of the doc belongs to, from its shape and its section.
fn target(s: &Shown, v: &Value, titles: &BTreeMap<String, String>) -> Result<Target, String> {
    if let Some(&(_, file, def)) = FRAGMENTS.iter().find(|(l, ..)| *l == s.label) {
        return Ok(Target::Schema(file.to_owned(), Some(def)));
    }
    let has = |k: &str| v.get(k).is_some();
    // A value listed in QUERY_OF is named there, before its heading (3.18#1, an add).
    let named = listed(QUERY_OF, &s.label)
        .or_else(|| named_by_heading(titles, &s.section))
        .ok_or_else(|| format!("no command or query for section {}", s.section));
    let target = if has("ok") && has("command_id") {
        schema("replies/command.json")
    } else if has("command_id") && has("actor") {
        let name = named?;
        if let Some(subject) = s.context.split("Request on `").nth(1) {
            let subject = subject.split('`').next().unwrap_or_default();
            if !subject.ends_with(&format!(".{name}")) {
                return Err(format!("section names `{name}`, the text `{subject}`"));
            }
        }
        schema(format!("commands/{name}.json"))
    } else if has("command_id") && has("events") {
        schema("history/commit.json")
    } else if has("v") && has("meta") && has("type") {
        schema("history/event.json")
    } else if has("ok") {
        schema(format!("replies/{}.json", named?))
    } else if Query::NAMES.contains(&named.clone()?) {
        schema(format!("queries/{}.json", named?))
    } else {
        return Err("fits no schema".to_owned());
    };
    Ok(target)
}

/// The query a route of the HTTP API answers (docs/protocol.md 6.1).
fn query_of_route(url: &str) -> Option<&'static str> {
    let path = url.split('?').next()?.split("/v1/accounts/").nth(1)?;
    let parts: Vec<&str> = path.split('/').collect();
    Some(match parts.as_slice() {
        [_] => "account",
        [_, "access"] => "check_access",
        [_, "access", "batch"] => "check_access_batch",
        [_, "records", _, _, "followers"] => "followers",
        [_, "records", _, _, "history"] => "record_history",
        [_, "users", _, "records"] => "records_of_user",
        [_, "contacts", _, "opportunities"] => "contact_opportunities",
        _ => return None,
    })
}

/// Every value of the doc to validate: label, line, target and value.
type Check = (String, usize, Target, Value);

fn checks(shown: &[Shown], titles: &BTreeMap<String, String>) -> (Vec<Check>, Vec<String>) {
    let mut out = Vec::new();
    let mut unplaced = Vec::new();
    for s in shown {
        if let Some(reason) = listed(SKIPPED, &s.label) {
            out.push((
                s.label.clone(),
                s.line,
                Target::Skipped(reason),
                Value::Null,
            ));
            continue;
        }
        match &s.item {
            Item::Json(v) => match target(s, v, titles) {
                Ok(t) => out.push((s.label.clone(), s.line, t, v.clone())),
                Err(e) => unplaced.push(format!("{} (line {}): {e}", s.label, s.line)),
            },
            Item::Row(answer) => out.push((
                s.label.clone(),
                s.line,
                Target::Schema("replies/check_access.json".to_owned(), Some("AccessAnswer")),
                answer.clone(),
            )),
            Item::Curl { url, body, output } => {
                let Some(query) = query_of_route(url) else {
                    unplaced.push(format!("{} (line {}): no query at {url}", s.label, s.line));
                    continue;
                };
                for (kind, value) in [("queries", body), ("replies", output)] {
                    if let Some(v) = value {
                        let t = schema(format!("{kind}/{query}.json"));
                        out.push((s.label.clone(), s.line, t, v.clone()));
                    }
                }
            }
        }
    }
    (out, unplaced)
}

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_json_example_of_the_protocol_validates_against_its_schema() {
    let (shown, titles) = extract(&doc());
    let (checks, unplaced) = checks(&shown, &titles);
    assert!(
        unplaced.is_empty(),
        "examples of docs/protocol.md this test cannot place; give each a schema or a SKIPPED \
         entry:\n{}",
        unplaced.join("\n")
    );
    let schemas = Schemas::load();
    let mut failures = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (label, line, target, value) in &checks {
        let Target::Schema(path, def) = target else {
            *counts.entry("skipped".to_owned()).or_default() += 1;
            continue;
        };
        *counts.entry(path.clone()).or_default() += 1;
        for e in schemas.errors(path, *def, value) {
            failures.push(format!("{label} (line {line}) against {path}: {e}"));
        }
    }
    println!("{counts:#?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every kind of message is among them.
    for path in [
        "replies/command.json",
        "history/commit.json",
        "history/event.json",
    ] {
        assert!(
            counts.contains_key(path),
            "no example checked against {path}"
        );
    }
    let requests = counts.keys().filter(|p| p.starts_with("commands/")).count();
    assert_eq!(
        requests,
        COMMAND_NAMES.len(),
        "a request of every command: {counts:?}"
    );
    let labels: BTreeSet<&str> = shown.iter().map(|s| s.label.as_str()).collect();
    for (label, _) in SKIPPED.iter().chain(INVALID_SKIPPED) {
        assert!(
            labels.contains(label),
            "{label} is listed but not in the doc"
        );
    }
    for (label, ..) in FRAGMENTS.iter().map(|f| (f.0, ())) {
        assert!(
            labels.contains(label),
            "{label} is listed but not in the doc"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The malformed requests behind the doc's refusals

/// Who refuses a request, and so what message it gets.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// `parse_command` with this command's name.
    Command(&'static str),
    /// `Query::parse` of this query, from these exact bytes (the message names a column).
    Query(&'static str),
    /// Read fine; refused when the projection answers (checked in projection-service).
    Answering(&'static str),
}

const CID: &str = "0193a000-0000-7000-8000-0000000000";

/// The requests of the doc's `malformed_request` refusals (as in the script of
/// tests/tests/protocol_examples.rs): the refusal's label, who reads it, and the body.
fn invalid_requests() -> Vec<(&'static str, Reader, String)> {
    let ann = json!({"kind": "user", "user": "ann"});
    let c1 = json!({"kind": "contact", "id": "c1"});
    let cmd = |n: u32, fields: Value| {
        let mut body = json!({"command_id": format!("{CID}{n:02}"), "actor": ann});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body.to_string()
    };
    let member = json!({"user": "zoe", "name": "n".repeat(257), "email": "zoe@acme.example",
        "role": "user", "data_scope": "all"});
    let hundred_one: Vec<String> = (0..101).map(|n| format!("u{n}")).collect();
    let check = json!({"user": "bob", "action": "view", "record": c1});
    vec![
        (
            "1.3#1",
            Reader::Command("add_followers"),
            cmd(
                76,
                json!({"record": {"kind": "contact", "id": "c.1"}, "users": ["eve"]}),
            ),
        ),
        ("3.6#7", Reader::Command("register_member"), cmd(82, member)),
        (
            "3.11#3",
            Reader::Command("change_settings"),
            cmd(68, json!({"allow_different_owner": true})),
        ),
        (
            "3.15#11",
            Reader::Command("add_followers"),
            cmd(58, json!({"users": ["eve"]})),
        ),
        (
            "3.15#12",
            Reader::Command("add_followers"),
            cmd(59, json!({"record": c1, "users": []})),
        ),
        (
            "3.15#13",
            Reader::Command("add_followers"),
            cmd(81, json!({"record": c1, "users": hundred_one})),
        ),
        (
            "3.17#6",
            Reader::Command("create_contact"),
            json!({"command_id": "0193a000-0000-7000-8000-000000000304", "actor": ann, "contact": "c8",
                   "dry_run": "yes"})
            .to_string(),
        ),
        (
            "5.3#5",
            Reader::Query("check_access"),
            r#"{"user": "cid", "action": "delete", "record": {"kind": "contact", "id": "c1"}}"#
                .to_owned(),
        ),
        (
            "5.4#3",
            Reader::Answering("check_access_batch"),
            json!({"checks": vec![check; 1001]}).to_string(),
        ),
    ]
}

/// The `malformed_request` replies the doc shows, by label, with their messages.
fn malformed_refusals(shown: &[Shown]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in shown {
        let reply = match &s.item {
            Item::Json(v) => Some(v),
            Item::Curl { output, .. } => output.as_ref(),
            Item::Row(_) => None,
        };
        if let Some(error) = reply.and_then(|r| r.get("error"))
            && error["code"] == "malformed_request"
        {
            out.insert(
                s.label.clone(),
                error["message"].as_str().unwrap().to_owned(),
            );
        }
    }
    out
}

#[test]
fn the_requests_of_the_documented_refusals_fail_their_schemas() {
    let (shown, _) = extract(&doc());
    let refusals = malformed_refusals(&shown);
    let requests = invalid_requests();
    let known: BTreeSet<&str> = requests
        .iter()
        .map(|r| r.0)
        .chain(INVALID_SKIPPED.iter().map(|s| s.0))
        .collect();
    let shown_labels: BTreeSet<&str> = refusals.keys().map(String::as_str).collect();
    assert_eq!(
        shown_labels, known,
        "every malformed_request refusal of the doc needs its request here (or a reason)"
    );
    let schemas = Schemas::load();
    let mut failures = Vec::new();
    for (label, reader, body) in &requests {
        let message = &refusals[*label];
        let value: Value = serde_json::from_str(body).unwrap();
        let (path, refused) = match *reader {
            Reader::Command(name) => (
                format!("commands/{name}.json"),
                parse_command("acme", name, body.as_bytes(), Utc::now())
                    .err()
                    .map(|e| e.1),
            ),
            Reader::Query(name) => (
                format!("queries/{name}.json"),
                Query::parse(name, body.as_bytes()).err(),
            ),
            Reader::Answering(name) => {
                assert!(Query::parse(name, body.as_bytes()).is_ok(), "{label}");
                (format!("queries/{name}.json"), None)
            }
        };
        if schemas.errors(&path, None, &value).is_empty() {
            failures.push(format!("{label}: {path} accepts the refused request"));
        }
        if let Some(refusal) = refused {
            if refusal.message != *message {
                failures.push(format!(
                    "{label}: the parser says {:?}, the doc {message:?}",
                    refusal.message
                ));
            }
        } else if !matches!(reader, Reader::Answering(_)) {
            failures.push(format!("{label}: the parser accepts the request"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
