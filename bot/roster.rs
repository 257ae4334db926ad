//! Roster import: caregiver and supervisor CSV files, each row validated at the edge (E.164
//! phone, IANA time zone, supported language, known supervisor, well-formed groups). Bad rows
//! are reported by line number with the reason; the good rows are imported either way.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use chrono::NaiveDate;

use crate::domain::{Lang, Phone};
use chrono::{DateTime, Utc};

use crate::model::{CaregiverRecord, SupervisorRecord, TrainingRecord, UpsertOutcome};
use crate::store::{Store, StoreError};

pub const CAREGIVER_HEADERS: &[&str] = &[
    "external_id",
    "first_name",
    "last_name",
    "phone",
    "language",
    "timezone",
    "branch",
    "supervisor_id",
    "groups",
    "consent_at",
];

pub const SUPERVISOR_HEADERS: &[&str] = &[
    "external_id",
    "name",
    "phone",
    "email",
    "branch",
    "timezone",
];

/// `carebot import training`: one module assigned to one caregiver per row.
pub const TRAINING_HEADERS: &[&str] = &["external_id", "module", "link", "due_date"];

/// Rows per upsert transaction: each keeps SQLite's write lock for a fraction of a second, so
/// webhooks keep being answered during a nightly import of 100,000 rows.
const IMPORT_CHUNK: usize = 5000;

/// Told how far an import has got: (rows done, rows in the file).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// What an import did, in the words the summary line uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deactivated: usize,
    /// `(line, reason)`, the header being line 1.
    pub rejected: Vec<(u64, String)>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added {}, updated {}, unchanged {}, deactivated {}, rejected {}",
            self.added,
            self.updated,
            self.unchanged,
            self.deactivated,
            self.rejected.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("line 1: missing column(s) {0} (expected: {1})")]
    Headers(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One CSV row: header to value.
type Row = HashMap<String, String>;

/// Reads rows as maps from header to value, keeping each row's line number.
fn rows(input: impl Read, expected: &[&str]) -> Result<Vec<(u64, Row)>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|h| !headers.iter().any(|x| x == h))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::Headers(missing.join(", "), expected.join(",")));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        let map = headers
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        out.push((line, map));
    }
    Ok(out)
}

fn field<'a>(row: &'a HashMap<String, String>, key: &str) -> &'a str {
    row.get(key).map_or("", String::as_str)
}

fn timezone(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("timezone is empty (an IANA name such as America/Chicago)".into());
    }
    s.parse::<chrono_tz::Tz>()
        .map(|_| s.to_owned())
        .map_err(|_| {
            format!("timezone {s:?} is not an IANA time zone name (such as America/Chicago)")
        })
}

fn phone(s: &str) -> Result<String, String> {
    Phone::parse(s)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| format!("phone {s:?}: {e}"))
}

/// Validates one caregiver row.
pub fn parse_caregiver(
    row: &HashMap<String, String>,
    supervisors: &HashSet<String>,
) -> Result<CaregiverRecord, String> {
    let external_id = field(row, "external_id");
    if external_id.is_empty() {
        return Err("external_id is empty".into());
    }
    let first_name = field(row, "first_name");
    if first_name.is_empty() {
        return Err("first_name is empty".into());
    }
    let phone = phone(field(row, "phone"))?;
    let language = match field(row, "language") {
        "" => Lang::En,
        l => l.parse::<Lang>()?,
    };
    let timezone = timezone(field(row, "timezone"))?;
    let supervisor_id = match field(row, "supervisor_id") {
        "" => None,
        s if supervisors.contains(s) => Some(s.to_owned()),
        s => {
            return Err(format!(
                "supervisor_id {s:?} is not a known supervisor (import supervisors first)"
            ));
        }
    };
    let mut groups = Vec::new();
    for g in field(row, "groups")
        .split(';')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !g
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "group {g:?} may only hold letters, digits, - and _ (groups are separated by ;)"
            ));
        }
        groups.push(g.to_lowercase());
    }
    groups.sort();
    groups.dedup();
    let consent_at = match field(row, "consent_at") {
        "" => None,
        d => Some(
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| format!("consent_at {d:?} is not a date (YYYY-MM-DD)"))?,
        ),
    };
    Ok(CaregiverRecord {
        external_id: external_id.to_owned(),
        first_name: first_name.to_owned(),
        last_name: field(row, "last_name").to_owned(),
        phone,
        language,
        timezone,
        branch: field(row, "branch").to_owned(),
        supervisor_id,
        groups,
        consent_at,
    })
}

pub fn parse_supervisor(row: &HashMap<String, String>) -> Result<SupervisorRecord, String> {
    let external_id = field(row, "external_id");
    if external_id.is_empty() {
        return Err("external_id is empty".into());
    }
    let name = field(row, "name");
    if name.is_empty() {
        return Err("name is empty".into());
    }
    let email = field(row, "email");
    if !email.is_empty() && !email.contains('@') {
        return Err(format!("email {email:?} is not an email address"));
    }
    Ok(SupervisorRecord {
        external_id: external_id.to_owned(),
        name: name.to_owned(),
        phone: phone(field(row, "phone"))?,
        email: email.to_owned(),
        branch: field(row, "branch").to_owned(),
        timezone: timezone(field(row, "timezone"))?,
    })
}

/// Imports caregivers. With `sync`, active caregivers missing from the file are deactivated
/// (never deleted) — but only when no row was rejected, so a half-broken file cannot
/// deactivate the people on its bad lines.
pub async fn import_caregivers<S: Store>(
    store: &S,
    input: impl Read,
    sync: bool,
) -> Result<ImportSummary, ImportError> {
    import_caregivers_with_progress(store, input, sync, &|_, _| {}).await
}

/// [`import_caregivers`], telling `progress` after each chunk (the CLI's progress bar).
pub async fn import_caregivers_with_progress<S: Store>(
    store: &S,
    input: impl Read,
    sync: bool,
    progress: Progress<'_>,
) -> Result<ImportSummary, ImportError> {
    let rows = rows(input, CAREGIVER_HEADERS)?;
    let total = rows.len() as u64;
    let supervisors: HashSet<String> = store.supervisor_ids().await?.into_iter().collect();
    let mut summary = ImportSummary::default();
    let mut good = Vec::new();
    let mut lines = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut phones: HashMap<String, u64> = HashMap::new();
    for (line, row) in &rows {
        match parse_caregiver(row, &supervisors) {
            Err(reason) => summary.rejected.push((*line, reason)),
            Ok(rec) => {
                if let Some(first) = ids.get(&rec.external_id) {
                    summary.rejected.push((
                        *line,
                        format!("external_id {:?} already on line {first}", rec.external_id),
                    ));
                } else if let Some(first) = phones.get(&rec.phone) {
                    summary.rejected.push((
                        *line,
                        format!(
                            "phone {} already belongs to the caregiver on line {first}",
                            crate::domain::phone::mask_address(&rec.phone)
                        ),
                    ));
                } else {
                    ids.insert(rec.external_id.clone(), *line);
                    phones.insert(rec.phone.clone(), *line);
                    lines.push(*line);
                    good.push(rec);
                }
            }
        }
    }
    let keep: Vec<String> = good.iter().map(|r| r.external_id.clone()).collect();
    // Chunks keep each transaction (and SQLite's write lock) short on a 100,000-row file.
    let bad = summary.rejected.len() as u64;
    let mut done = 0;
    progress(bad, total);
    for (chunk, chunk_lines) in good.chunks(IMPORT_CHUNK).zip(lines.chunks(IMPORT_CHUNK)) {
        let outcomes = store.upsert_caregivers(chunk).await?;
        tally(&mut summary, outcomes, chunk_lines);
        done += chunk.len() as u64;
        progress(bad + done, total);
    }
    if sync && summary.rejected.is_empty() {
        summary.deactivated = store.deactivate_caregivers_except(&keep).await? as usize;
    }
    summary.rejected.sort();
    Ok(summary)
}

pub async fn import_supervisors<S: Store>(
    store: &S,
    input: impl Read,
) -> Result<ImportSummary, ImportError> {
    let rows = rows(input, SUPERVISOR_HEADERS)?;
    let mut summary = ImportSummary::default();
    let mut good = Vec::new();
    let mut lines = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    for (line, row) in &rows {
        match parse_supervisor(row) {
            Err(reason) => summary.rejected.push((*line, reason)),
            Ok(rec) => {
                if let Some(first) = ids.get(&rec.external_id) {
                    summary.rejected.push((
                        *line,
                        format!("external_id {:?} already on line {first}", rec.external_id),
                    ));
                } else {
                    ids.insert(rec.external_id.clone(), *line);
                    lines.push(*line);
                    good.push(rec);
                }
            }
        }
    }
    let outcomes = store.upsert_supervisors(&good).await?;
    tally(&mut summary, outcomes, &lines);
    summary.rejected.sort();
    Ok(summary)
}

/// Validates one training row against the caregivers on the roster.
pub fn parse_training(
    row: &HashMap<String, String>,
    caregivers: &HashSet<String>,
) -> Result<TrainingRecord, String> {
    let caregiver = field(row, "external_id");
    if caregiver.is_empty() {
        return Err("external_id is empty".into());
    }
    if !caregivers.contains(caregiver) {
        return Err(format!(
            "external_id {caregiver:?} is not a caregiver on the roster (import caregivers first)"
        ));
    }
    let module = field(row, "module");
    if module.is_empty() {
        return Err("module is empty".into());
    }
    if module.chars().count() > 120 {
        return Err("module is longer than 120 characters (it is texted)".into());
    }
    let link = field(row, "link");
    let well_formed = (link.starts_with("https://") || link.starts_with("http://"))
        && link.len() > "https://".len()
        && !link.chars().any(char::is_whitespace);
    if !well_formed {
        return Err(format!("link {link:?} is not a web address (https://…)"));
    }
    let due = field(row, "due_date");
    let due_date = NaiveDate::parse_from_str(due, "%Y-%m-%d")
        .map_err(|_| format!("due_date {due:?} is not a date (YYYY-MM-DD)"))?;
    Ok(TrainingRecord {
        caregiver: caregiver.to_owned(),
        module: module.to_owned(),
        link: link.to_owned(),
        due_date,
    })
}

/// Imports training assignments (`external_id,module,link,due_date`) for `flow_id`. Each new
/// assignment starts that flow for its caregiver at the scheduler's next tick; re-importing
/// changes nothing, and a module the caregiver already finished (DONE) is never nudged again.
pub async fn import_training<S: Store>(
    store: &S,
    input: impl Read,
    flow_id: &str,
    now: DateTime<Utc>,
) -> Result<ImportSummary, ImportError> {
    let rows = rows(input, TRAINING_HEADERS)?;
    let caregivers: HashSet<String> = store.caregiver_external_ids().await?.into_iter().collect();
    let mut summary = ImportSummary::default();
    let mut good = Vec::new();
    let mut lines = Vec::new();
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    for (line, row) in &rows {
        match parse_training(row, &caregivers) {
            Err(reason) => summary.rejected.push((*line, reason)),
            Ok(rec) => {
                let key = (rec.caregiver.clone(), rec.module.clone());
                if let Some(first) = seen.get(&key) {
                    summary.rejected.push((
                        *line,
                        format!(
                            "module {:?} for {:?} already on line {first}",
                            rec.module, rec.caregiver
                        ),
                    ));
                } else {
                    seen.insert(key, *line);
                    lines.push(*line);
                    good.push(rec);
                }
            }
        }
    }
    for (chunk, chunk_lines) in good.chunks(IMPORT_CHUNK).zip(lines.chunks(IMPORT_CHUNK)) {
        let outcomes = store.upsert_training(flow_id, chunk, now).await?;
        tally(
            &mut summary,
            outcomes.into_iter().map(|o| (o, None)).collect(),
            chunk_lines,
        );
    }
    summary.rejected.sort();
    Ok(summary)
}

fn tally(
    summary: &mut ImportSummary,
    outcomes: Vec<(UpsertOutcome, Option<String>)>,
    lines: &[u64],
) {
    for ((outcome, reason), line) in outcomes.into_iter().zip(lines) {
        match outcome {
            UpsertOutcome::Added => summary.added += 1,
            UpsertOutcome::Updated => summary.updated += 1,
            UpsertOutcome::Unchanged => summary.unchanged += 1,
            UpsertOutcome::Rejected => summary
                .rejected
                .push((*line, reason.unwrap_or_else(|| "rejected".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("external_id", "C1"),
            ("first_name", "Maria"),
            ("last_name", "Gonzalez"),
            ("phone", "(312) 555-0123"),
            ("language", "es"),
            ("timezone", "America/Chicago"),
            ("branch", "Chicago North"),
            ("supervisor_id", "S1"),
            ("groups", "pulse; Training"),
            ("consent_at", "2026-01-15"),
        ]
    }

    #[test]
    fn a_good_row_is_normalized() {
        let sups = HashSet::from(["S1".to_owned()]);
        let rec = parse_caregiver(&row(&good()), &sups).unwrap();
        assert_eq!(rec.phone, "+13125550123");
        assert_eq!(rec.language, Lang::Es);
        assert_eq!(rec.groups, vec!["pulse", "training"]);
    }

    #[test]
    fn each_bad_field_has_a_reason() {
        let sups = HashSet::from(["S1".to_owned()]);
        for (key, value, reason) in [
            ("phone", "123-456-7890", "phone"),
            ("timezone", "Chicago", "IANA"),
            ("language", "fr", "unsupported language"),
            ("supervisor_id", "S9", "not a known supervisor"),
            ("groups", "a b", "group"),
            ("consent_at", "yesterday", "consent_at"),
            ("external_id", "", "external_id is empty"),
        ] {
            let mut r = good();
            r.retain(|(k, _)| *k != key);
            r.push((key, value));
            let err = parse_caregiver(&row(&r), &sups).unwrap_err();
            assert!(err.contains(reason), "{key}={value}: {err}");
        }
    }
}
