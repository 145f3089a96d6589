//! Demo data (`--demo`): users, customers, calendar events and a sheet.
//! Seeding is idempotent: it only adds what is missing, and never brings back
//! a record someone deleted.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::auth::{ensure_user, hash_password};
use crate::db::Db;
use crate::error::ApiError;
use crate::history::Author;
use crate::records;
use crate::validate::{CALENDAR_EVENTS, CUSTOMERS, CUSTOMER_STATUSES};

/// Password of every demo user.
pub const DEMO_PASSWORD: &str = "demo";

/// Number of customers seeded.
pub const DEMO_CUSTOMERS: usize = 200;

/// Rows of the demo sheet (plus two broken ones).
pub const DEMO_SHEET_ROWS: usize = 1500;

const COMPANIES: [&str; 20] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Massive Dynamic",
    "Aperture",
    "Black Mesa",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Nakatomi",
    "Prestige",
];
const SUFFIXES: [&str; 8] = ["Ltd", "GmbH", "Inc", "SA", "BV", "Oy", "AB", "LLC"];
const CITIES: [&str; 12] = [
    "Berlin", "Lisbon", "Oslo", "Paris", "Madrid", "Vienna", "Prague", "Dublin", "Helsinki",
    "Milan", "Zurich", "Warsaw",
];

/// Names of the demo users: alice, bob, user01 .. user50.
pub fn demo_users() -> Vec<String> {
    let mut users = vec!["alice".to_owned(), "bob".to_owned()];
    users.extend((1..=50).map(|i| format!("user{i:02}")));
    users
}

/// Id of demo customer `n` (1-based).
pub fn customer_id(n: usize) -> String {
    format!("c-{n:04}")
}

/// Fields of demo customer `n` (1-based); deterministic, so the demo sheet
/// matches the seeded records.
pub fn customer_fields(n: usize) -> Map<String, Value> {
    let company = COMPANIES[n % COMPANIES.len()];
    let users = demo_users();
    let owner = users[n % users.len()].clone();
    let slug: String = company.to_ascii_lowercase().replace(' ', "-");
    let mut fields = Map::new();
    fields.insert(
        "name".into(),
        json!(format!(
            "{company} {} {n}",
            SUFFIXES[(n / 20) % SUFFIXES.len()]
        )),
    );
    fields.insert("email".into(), json!(format!("contact{n}@{slug}.example")));
    fields.insert("phone".into(), json!(format!("+1-555-{n:04}")));
    fields.insert(
        "status".into(),
        json!(CUSTOMER_STATUSES[n % CUSTOMER_STATUSES.len()]),
    );
    fields.insert("owner".into(), json!(owner));
    fields.insert("city".into(), json!(CITIES[n % CITIES.len()]));
    fields
}

/// Seeds users, customers and calendar events that are missing.
///
/// # Errors
/// Internal errors from SQLite.
pub async fn seed(db: &Arc<Db>) -> Result<(), ApiError> {
    let users = demo_users();
    let wanted = users.clone();
    let missing: Vec<String> = db
        .read(move |tx| {
            let mut missing = Vec::new();
            for u in wanted {
                let n: i64 = tx
                    .query_one("SELECT COUNT(*) FROM users WHERE name = ?1", &[&u])?
                    .get(0)?;
                if n == 0 {
                    missing.push(u);
                }
            }
            Ok(missing)
        })
        .await?;
    // One hash shared by the demo users: argon2 is slow on purpose, and 52
    // hashes of the same public demo password would protect nothing more.
    let hash = if missing.is_empty() {
        None
    } else {
        Some(tokio::task::spawn_blocking(|| hash_password(DEMO_PASSWORD)).await??)
    };
    let events = demo_events();
    let added = db
        .write(move |tx| {
            if let Some(hash) = &hash {
                for u in &missing {
                    ensure_user(tx, u, hash)?;
                }
            }
            let mut added = 0;
            let mut add =
                |collection: &str, id: &str, fields: Map<String, Value>| -> Result<(), ApiError> {
                    let exists: i64 = tx
                        .query_one(
                            "SELECT COUNT(*) FROM records WHERE collection = ?1 AND id = ?2",
                            &[&collection, &id],
                        )?
                        .get(0)?;
                    if exists == 0 {
                        records::insert(tx, collection, id, fields, &Author::person("demo"))?;
                        added += 1;
                    }
                    Ok(())
                };
            for n in 1..=DEMO_CUSTOMERS {
                add(CUSTOMERS, &customer_id(n), customer_fields(n))?;
            }
            for (id, fields) in events {
                add(CALENDAR_EVENTS, &id, fields)?;
            }
            Ok(added)
        })
        .await?;
    tracing::info!(records = added, "demo data seeded");
    Ok(())
}

fn demo_events() -> Vec<(String, Map<String, Value>)> {
    let day = chrono::Utc::now().date_naive();
    let resources = ["room-a", "room-b", "van-1"];
    let titles = [
        "Kick-off",
        "Demo",
        "Site visit",
        "Review",
        "Training",
        "Planning",
    ];
    (0..6)
        .map(|i| {
            let start = day
                .and_hms_opt(9 + i as u32, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or_default();
            let end = start + chrono::Duration::minutes(50);
            let mut fields = Map::new();
            fields.insert("title".into(), json!(titles[i]));
            fields.insert("resource".into(), json!(resources[i % resources.len()]));
            fields.insert(
                "start".into(),
                json!(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
            fields.insert(
                "end".into(),
                json!(end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
            fields.insert("status".into(), json!("confirmed"));
            (format!("ev-{:03}", i + 1), fields)
        })
        .collect()
}

/// Writes the demo sheet if `path` does not exist: rows for the seeded
/// customers (every tenth with a new phone, so an import updates them),
/// new customers up to [`DEMO_SHEET_ROWS`], and two broken rows.
///
/// # Errors
/// I/O errors.
pub fn write_demo_sheet(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = String::from("id,version,name,email,phone,status,owner,city\n");
    for n in 1..=DEMO_SHEET_ROWS {
        let f = customer_fields(n);
        let s = |k: &str| {
            f.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let phone = if n <= DEMO_CUSTOMERS && n % 10 == 0 {
            format!("+1-555-9{n:03}")
        } else {
            s("phone")
        };
        let version = if n <= DEMO_CUSTOMERS { "1" } else { "" };
        out.push_str(&format!(
            "{},{version},{},{},{phone},{},{},{}\n",
            customer_id(n),
            s("name"),
            s("email"),
            s("status"),
            s("owner"),
            s("city")
        ));
    }
    out.push_str("bad-1,,Broken Email Ltd,not-an-email,,lead,alice,Oslo\n");
    out.push_str("bad-2,,Too Few Cells\n");
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, path)
}
