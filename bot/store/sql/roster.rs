//! The roster: caregivers and supervisors as imports write them and every path reads them
//! (`load_caregivers`), and the audiences a start or a shift offer is sent to.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use sqlx::migrate::Migrate;
use sqlx::query::QueryAs;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments};
use sqlx::{QueryBuilder, Type};

use super::rows::*;
use super::{CHUNK, Dialect, SqlStore, SqlValue, Ts};
use crate::domain::{Address, Channel, Lang};
use crate::model::{
    Audience, Caregiver, CaregiverRecord, ConsentStatus, SupervisorRecord, UpsertOutcome,
};
use crate::store::Result;

/// What an import batch is compared with: the stored caregivers it names by external id (with
/// their id, and whether active), who holds each of its phone numbers, and their SMS consent.
struct StoredRoster {
    stored: HashMap<String, (i64, CaregiverRecord, bool)>,
    phone_owner: HashMap<String, String>,
    consent: HashMap<String, ConsentStatus>,
}

/// Which caregivers to load.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum Filter<'a> {
    Id(i64),
    ExternalId(&'a str),
    Phone(&'a str),
    /// A non-phone address, through `caregiver_links`.
    Link(Channel, &'a str),
    Active,
    ActiveGroup(&'a str),
    ActiveBranch(&'a str),
    ActivePhone(&'a str),
}

impl Filter<'_> {
    /// The caregivers statement and the groups statement.
    pub(super) fn sql(self) -> (&'static str, &'static str) {
        match self {
            Filter::Id(_) => caregivers_where!("c.id = $1"),
            Filter::ExternalId(_) => caregivers_where!("c.external_id = $1"),
            Filter::Phone(_) => caregivers_where!("c.phone = $1"),
            Filter::Link(..) => caregivers_where!(
                "c.id IN (SELECT caregiver_id FROM caregiver_links \
                 WHERE channel = $1 AND address = $2)"
            ),
            Filter::Active => caregivers_where!("c.active"),
            Filter::ActiveGroup(_) => caregivers_where!(
                "c.active AND c.id IN (SELECT caregiver_id FROM caregiver_groups WHERE name = $1)"
            ),
            Filter::ActiveBranch(_) => caregivers_where!("c.active AND c.branch = $1"),
            Filter::ActivePhone(_) => caregivers_where!("c.active AND c.phone = $1"),
        }
    }

    /// The caregivers an address belongs to: by phone number on SMS and the console, by link
    /// elsewhere.
    pub(super) fn address(address: &Address) -> Filter<'_> {
        match address.channel {
            Channel::Sms | Channel::Console => Filter::Phone(&address.value),
            other => Filter::Link(other, &address.value),
        }
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Connection: Migrate,
    DB::Arguments: IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    i64: SqlValue<DB>,
    bool: SqlValue<DB>,
    String: SqlValue<DB>,
    Ts: SqlValue<DB>,
    NaiveDate: SqlValue<DB>,
    Option<i64>: SqlValue<DB>,
    Option<String>: SqlValue<DB>,
    Option<Ts>: SqlValue<DB>,
    Option<NaiveDate>: SqlValue<DB>,
{
    pub(super) fn bind_filter<'q, O>(
        query: QueryAs<'q, DB, O, DB::Arguments>,
        filter: Filter<'_>,
    ) -> QueryAs<'q, DB, O, DB::Arguments> {
        match filter {
            Filter::Id(id) => query.bind(id),
            Filter::Active => query,
            Filter::Link(channel, address) => query.bind(channel.as_str()).bind(address.to_owned()),
            Filter::ExternalId(text)
            | Filter::Phone(text)
            | Filter::ActiveGroup(text)
            | Filter::ActiveBranch(text)
            | Filter::ActivePhone(text) => query.bind(text.to_owned()),
        }
    }

    pub(super) async fn load_caregivers(
        conn: &mut DB::Connection,
        filter: Filter<'_>,
    ) -> Result<Vec<Caregiver>> {
        let (caregivers_sql, groups_sql) = filter.sql();
        let rows: Vec<CaregiverDb> = Self::bind_filter(sqlx::query_as(caregivers_sql), filter)
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let memberships: Vec<(i64, String)> = Self::bind_filter(sqlx::query_as(groups_sql), filter)
            .fetch_all(&mut *conn)
            .await?;
        let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
        for (caregiver_id, name) in memberships {
            groups.entry(caregiver_id).or_default().push(name);
        }
        rows.into_iter()
            .map(|row| {
                let mine = groups.remove(&row.id).unwrap_or_default();
                row.into_caregiver(mine)
            })
            .collect()
    }

    pub(in crate::store) async fn load_caregiver(
        conn: &mut DB::Connection,
        filter: Filter<'_>,
    ) -> Result<Option<Caregiver>> {
        Ok(Self::load_caregivers(conn, filter)
            .await?
            .into_iter()
            .next())
    }

    /// The phones of `rows` with no consent on record whose hash an erasure kept as opted out.
    pub(super) async fn erased_opt_outs(
        conn: &mut DB::Connection,
        rows: &[CaregiverRecord],
        consent: &HashMap<String, ConsentStatus>,
    ) -> Result<Vec<String>> {
        let (kept,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM erased_opt_outs")
            .fetch_one(&mut *conn)
            .await?;
        if kept == 0 {
            return Ok(Vec::new());
        }
        let mut by_hash: HashMap<String, &str> = HashMap::new();
        for r in rows.iter().filter(|r| !consent.contains_key(&r.phone)) {
            by_hash.insert(crate::privacy::erasure_hash("sms", &r.phone), &r.phone);
        }
        let hashes: Vec<&String> = by_hash.keys().collect();
        let mut found = Vec::new();
        for chunk in hashes.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT address_sha256 FROM erased_opt_outs WHERE channel = 'sms' \
                 AND address_sha256 IN (",
            );
            let mut list = q.separated(", ");
            for h in chunk {
                list.push_bind((*h).clone());
            }
            q.push(")");
            for (hash,) in q
                .build_query_as::<(String,)>()
                .fetch_all(&mut *conn)
                .await?
            {
                found.extend(by_hash.get(&hash).map(|p| (*p).to_owned()));
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Imports a batch of caregivers: compared with what is stored, decided row by row against
    /// it and the batch's earlier rows, then written.
    pub(super) async fn upsert_caregivers_in(
        conn: &mut DB::Connection,
        rows: &[CaregiverRecord],
    ) -> Result<Vec<(UpsertOutcome, Option<String>)>> {
        let now = Ts::now();
        let StoredRoster {
            stored,
            mut phone_owner,
            mut consent,
        } = Self::stored_roster(conn, rows).await?;
        // A number that was opted out when its caregiver was erased is opted out again when an
        // import brings it back: the erasure kept its hash for exactly this.
        for phone in Self::erased_opt_outs(conn, rows, &consent).await? {
            let address = Address::new(Channel::Sms, phone.clone());
            Self::write_consent(
                conn,
                &address,
                None,
                None,
                ConsentStatus::OptedOut,
                "erasure",
                "opted out before the caregiver's data was erased",
                now,
            )
            .await?;
            consent.insert(phone, ConsentStatus::OptedOut);
        }

        // Decide every row against what is stored and what earlier rows of this batch did.
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut seen: HashSet<&str> = HashSet::new();
        let mut inserts: Vec<&CaregiverRecord> = Vec::new();
        let mut updates: Vec<(i64, &CaregiverRecord, bool, bool)> = Vec::new();
        let mut opt_ins: Vec<&CaregiverRecord> = Vec::new();
        for record in rows {
            if !seen.insert(&record.external_id) {
                outcomes.push((
                    UpsertOutcome::Rejected,
                    Some(format!(
                        "external_id {} appears more than once",
                        record.external_id
                    )),
                ));
                continue;
            }
            if let Some(owner) = phone_owner.get(&record.phone)
                && *owner != record.external_id
            {
                outcomes.push((
                    UpsertOutcome::Rejected,
                    Some(format!(
                        "phone {} belongs to caregiver {owner}",
                        record.phone
                    )),
                ));
                continue;
            }
            let outcome = match stored.get(&record.external_id) {
                None => {
                    inserts.push(record);
                    UpsertOutcome::Added
                }
                Some((_, old, true)) if old == record => UpsertOutcome::Unchanged,
                Some((id, old, _)) => {
                    let phone_changed = old.phone != record.phone;
                    if phone_changed {
                        phone_owner.remove(&old.phone);
                    }
                    updates.push((*id, record, old.groups != record.groups, phone_changed));
                    UpsertOutcome::Updated
                }
            };
            phone_owner.insert(record.phone.clone(), record.external_id.clone());
            // Written consent on file opts the number in, once; it never overrides a STOP.
            let status = consent
                .get(&record.phone)
                .copied()
                .unwrap_or(ConsentStatus::Unknown);
            if record.consent_at.is_some() && status == ConsentStatus::Unknown {
                consent.insert(record.phone.clone(), ConsentStatus::OptedIn);
                opt_ins.push(record);
            }
            outcomes.push((outcome, None));
        }
        Self::write_roster(conn, &inserts, &updates, &opt_ins, now).await?;
        Ok(outcomes)
    }

    /// Everything an import batch is compared with, in three reads of the rows this batch
    /// touches (its external ids and its phone numbers), not of the whole roster: an import in
    /// chunks stays linear in the size of the file.
    async fn stored_roster(
        conn: &mut DB::Connection,
        rows: &[CaregiverRecord],
    ) -> Result<StoredRoster> {
        let mut existing: Vec<RosterDb> = Vec::new();
        let mut seen_ids: HashSet<i64> = HashSet::new();
        // Two lists of binds per statement: 2 × 2,000 stays under either database's limit.
        for chunk in rows.chunks(2000) {
            let mut select = QueryBuilder::<DB>::new(
                "SELECT id, external_id, first_name, last_name, phone, language, timezone, \
                 branch, supervisor_external_id, consent_at, active FROM caregivers \
                 WHERE external_id IN (",
            );
            let mut list = select.separated(", ");
            for r in chunk {
                list.push_bind(r.external_id.clone());
            }
            select.push(") OR phone IN (");
            let mut list = select.separated(", ");
            for r in chunk {
                list.push_bind(r.phone.clone());
            }
            select.push(")");
            for row in select
                .build_query_as::<RosterDb>()
                .fetch_all(&mut *conn)
                .await?
            {
                if seen_ids.insert(row.id) {
                    existing.push(row);
                }
            }
        }
        let mut memberships: Vec<(i64, String)> = Vec::new();
        for chunk in existing.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT caregiver_id, name FROM caregiver_groups WHERE caregiver_id IN (",
            );
            let mut list = q.separated(", ");
            for r in chunk {
                list.push_bind(r.id);
            }
            q.push(") ORDER BY caregiver_id, name");
            memberships.extend(
                q.build_query_as::<(i64, String)>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        let mut subscriptions: Vec<(String, String)> = Vec::new();
        for chunk in rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT address, status FROM subscriptions WHERE channel = 'sms' AND address IN (",
            );
            let mut list = q.separated(", ");
            for r in chunk {
                list.push_bind(r.phone.clone());
            }
            q.push(")");
            subscriptions.extend(
                q.build_query_as::<(String, String)>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }

        let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
        for (caregiver_id, name) in memberships {
            groups.entry(caregiver_id).or_default().push(name);
        }
        let mut stored: HashMap<String, (i64, CaregiverRecord, bool)> = HashMap::new();
        let mut phone_owner: HashMap<String, String> = HashMap::new();
        for row in existing {
            let record = CaregiverRecord {
                language: parse::<Lang>("caregiver language", &row.language)?,
                groups: groups.remove(&row.id).unwrap_or_default(),
                external_id: row.external_id,
                first_name: row.first_name,
                last_name: row.last_name,
                phone: row.phone,
                timezone: row.timezone,
                branch: row.branch,
                supervisor_id: row.supervisor_external_id,
                consent_at: row.consent_at,
            };
            phone_owner.insert(record.phone.clone(), record.external_id.clone());
            stored.insert(record.external_id.clone(), (row.id, record, row.active));
        }
        let mut consent: HashMap<String, ConsentStatus> = HashMap::new();
        for (address, status) in subscriptions {
            consent.insert(address, parse("consent status", &status)?);
        }
        Ok(StoredRoster {
            stored,
            phone_owner,
            consent,
        })
    }

    /// Writes an import batch as decided: `updates` are `(id, row, groups changed, phone
    /// changed)`; `opt_ins` the rows whose written consent opts their number in.
    async fn write_roster(
        conn: &mut DB::Connection,
        inserts: &[&CaregiverRecord],
        updates: &[(i64, &CaregiverRecord, bool, bool)],
        opt_ins: &[&CaregiverRecord],
        now: Ts,
    ) -> Result<()> {
        // Updates first, in batch order: a number an update gives up may be taken by a later row.
        let mut ids: HashMap<&str, i64> = HashMap::new();
        for &(id, record, groups_changed, phone_changed) in updates {
            sqlx::query(
                "UPDATE caregivers SET first_name = $2, last_name = $3, phone = $4, language = $5, \
                 timezone = $6, branch = $7, supervisor_external_id = $8, consent_at = $9, \
                 active = TRUE, phone_invalid = (phone_invalid AND NOT $10), updated_at = $11 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(record.first_name.clone())
            .bind(record.last_name.clone())
            .bind(record.phone.clone())
            .bind(record.language.code())
            .bind(record.timezone.clone())
            .bind(record.branch.clone())
            .bind(record.supervisor_id.clone())
            .bind(record.consent_at)
            .bind(phone_changed)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            if groups_changed {
                sqlx::query("DELETE FROM caregiver_groups WHERE caregiver_id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            ids.insert(&record.external_id, id);
        }
        for chunk in inserts.chunks(CHUNK) {
            let mut insert = QueryBuilder::<DB>::new(
                "INSERT INTO caregivers (external_id, first_name, last_name, phone, language, \
                 timezone, branch, supervisor_external_id, consent_at, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut row, record| {
                row.push_bind(record.external_id.clone())
                    .push_bind(record.first_name.clone())
                    .push_bind(record.last_name.clone())
                    .push_bind(record.phone.clone())
                    .push_bind(record.language.code())
                    .push_bind(record.timezone.clone())
                    .push_bind(record.branch.clone())
                    .push_bind(record.supervisor_id.clone())
                    .push_bind(record.consent_at)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.push(" RETURNING id, external_id");
            let inserted: Vec<(i64, String)> =
                insert.build_query_as().fetch_all(&mut *conn).await?;
            let by_external_id: HashMap<String, i64> =
                inserted.into_iter().map(|(id, e)| (e, id)).collect();
            for record in chunk {
                ids.insert(&record.external_id, by_external_id[&record.external_id]);
            }
        }

        // Group memberships of new caregivers and of those whose groups changed.
        let new_groups: Vec<(i64, &str)> = inserts
            .iter()
            .copied()
            .chain(updates.iter().filter(|u| u.2).map(|u| u.1))
            .flat_map(|r| {
                r.groups
                    .iter()
                    .map(|g| (ids[r.external_id.as_str()], g.as_str()))
            })
            .collect();
        for chunk in new_groups.chunks(CHUNK) {
            let mut insert =
                QueryBuilder::<DB>::new("INSERT INTO caregiver_groups (caregiver_id, name) ");
            insert.push_values(chunk, |mut row, (id, name)| {
                row.push_bind(*id).push_bind(name.to_string());
            });
            insert.build().execute(&mut *conn).await?;
        }

        for chunk in opt_ins.chunks(CHUNK) {
            let mut subscribe = QueryBuilder::<DB>::new(
                "INSERT INTO subscriptions (channel, address, status, updated_at) ",
            );
            subscribe.push_values(chunk, |mut row, record| {
                row.push_bind("sms")
                    .push_bind(record.phone.clone())
                    .push_bind(ConsentStatus::OptedIn.as_str())
                    .push_bind(now);
            });
            subscribe.push(
                " ON CONFLICT (channel, address) DO UPDATE SET status = excluded.status, \
                 updated_at = excluded.updated_at WHERE subscriptions.status = 'unknown'",
            );
            subscribe.build().execute(&mut *conn).await?;

            let mut ledger = QueryBuilder::<DB>::new(
                "INSERT INTO consent_ledger (channel, address, status, source, detail, \
                 caregiver_id, at) ",
            );
            ledger.push_values(chunk, |mut row, record| {
                let consent_at = record.consent_at.map(|d| d.to_string()).unwrap_or_default();
                row.push_bind("sms")
                    .push_bind(record.phone.clone())
                    .push_bind(ConsentStatus::OptedIn.as_str())
                    .push_bind("import")
                    .push_bind(format!("written consent collected {consent_at}"))
                    .push_bind(ids[record.external_id.as_str()])
                    .push_bind(now);
            });
            ledger.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    pub(super) async fn upsert_supervisors_in(
        conn: &mut DB::Connection,
        rows: &[SupervisorRecord],
    ) -> Result<Vec<(UpsertOutcome, Option<String>)>> {
        let now = Ts::now();
        let existing: Vec<SupervisorDb> = sqlx::query_as(
            "SELECT id, external_id, name, phone, email, branch, timezone FROM supervisors",
        )
        .fetch_all(&mut *conn)
        .await?;
        let stored: HashMap<String, (i64, SupervisorRecord)> = existing
            .into_iter()
            .map(|s| {
                let record = SupervisorRecord {
                    external_id: s.external_id,
                    name: s.name,
                    phone: s.phone,
                    email: s.email,
                    branch: s.branch,
                    timezone: s.timezone,
                };
                (record.external_id.clone(), (s.id, record))
            })
            .collect();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(rows.len());
        for record in rows {
            if !seen.insert(&record.external_id) {
                outcomes.push((
                    UpsertOutcome::Rejected,
                    Some(format!(
                        "external_id {} appears more than once",
                        record.external_id
                    )),
                ));
                continue;
            }
            let outcome = match stored.get(&record.external_id) {
                Some((_, old)) if old == record => UpsertOutcome::Unchanged,
                Some((id, _)) => {
                    sqlx::query(
                        "UPDATE supervisors SET name = $2, phone = $3, email = $4, branch = $5, \
                         timezone = $6, updated_at = $7 WHERE id = $1",
                    )
                    .bind(*id)
                    .bind(record.name.clone())
                    .bind(record.phone.clone())
                    .bind(record.email.clone())
                    .bind(record.branch.clone())
                    .bind(record.timezone.clone())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    UpsertOutcome::Updated
                }
                None => {
                    sqlx::query(
                        "INSERT INTO supervisors (external_id, name, phone, email, branch, \
                         timezone, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    )
                    .bind(record.external_id.clone())
                    .bind(record.name.clone())
                    .bind(record.phone.clone())
                    .bind(record.email.clone())
                    .bind(record.branch.clone())
                    .bind(record.timezone.clone())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    UpsertOutcome::Added
                }
            };
            outcomes.push((outcome, None));
        }
        Ok(outcomes)
    }

    pub(super) async fn deactivate_caregivers_except_in(&self, keep: &[String]) -> Result<u64> {
        // The keep list is a whole roster (100,000 ids is too many binds for one statement):
        // compare in Rust, then update the few that left.
        let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let active: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, external_id FROM caregivers WHERE active")
                .fetch_all(&mut *tx)
                .await?;
        let now = Ts::now();
        let mut deactivated = 0;
        for (id, _) in active.iter().filter(|(_, e)| !keep.contains(e.as_str())) {
            sqlx::query("UPDATE caregivers SET active = FALSE, updated_at = $2 WHERE id = $1")
                .bind(*id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            deactivated += 1;
        }
        tx.commit().await?;
        Ok(deactivated)
    }

    pub(super) async fn audience_in(&self, audience: &Audience) -> Result<Vec<Caregiver>> {
        let mut conn = self.pool.acquire().await?;
        match audience {
            Audience::All => Self::load_caregivers(&mut *conn, Filter::Active).await,
            Audience::Group(name) => {
                Self::load_caregivers(&mut *conn, Filter::ActiveGroup(name)).await
            }
            Audience::Branch(name) => {
                Self::load_caregivers(&mut *conn, Filter::ActiveBranch(name)).await
            }
            Audience::Phones(phones) => {
                // Typed on a command line: a handful, one indexed lookup each.
                let mut found = Vec::new();
                for phone in phones {
                    found.extend(
                        Self::load_caregivers(&mut *conn, Filter::ActivePhone(phone)).await?,
                    );
                }
                found.sort_by_key(|c| c.id);
                found.dedup_by_key(|c| c.id);
                Ok(found)
            }
        }
    }
}
