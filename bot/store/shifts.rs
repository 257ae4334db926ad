//! Shift offers in the store: the offers, who each was texted to and what they answered, and
//! the one conditional write that awards a shift. The types come first (what the runner's
//! `shifts` module reads and hands back); the SQL after them is shared by SQLite and PostgreSQL,
//! like the rest of `sql/`.
//!
//! Exactly one winner: a YES is applied inside the transaction that recorded the message, as
//! `UPDATE shift_offers SET status = 'filled' … WHERE id = $1 AND status = 'open'`. On SQLite
//! write transactions are serialized (`BEGIN IMMEDIATE`), so the second YES finds the row filled.
//! On PostgreSQL the second UPDATE waits on the first one's row lock and, once it commits,
//! re-checks `status = 'open'` on the committed row and changes nothing. Either way one UPDATE
//! reports a row and every other reports none, on one instance or many.

use std::collections::{HashMap, HashSet};

use chrono::{Duration, NaiveDate};
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

use super::sql::{Dialect, OutboundInsert, SqlStore, SqlValue, Ts, conversation_id, parse};
use super::{Result, StoreError};
use crate::model::{
    Caregiver, ClaimOutcome, ConsentStatus, DecideError, HeldShift, NewOutbound, NewShiftOffer,
    ShiftCandidate, ShiftClaim, ShiftListing, ShiftOffer, ShiftPlan, ShiftRecipient, ShiftSnapshot,
    ShiftStatus, ShiftTrigger, ShiftWrite, Supervisor, next_code,
};

/// The decision the runner hands to [`super::Store::handle_shift_offer`]; pure, called inside
/// the transaction. An `Err` rolls it back.
pub type ShiftDecide<'a> =
    dyn Fn(&ShiftSnapshot) -> std::result::Result<ShiftPlan, DecideError> + Send + Sync + 'a;

// ---------------------------------------------------------------------------------------------
// Rows as stored

/// The columns of a [`ShiftOfferDb`] (offer `o`, winner `c`, supervisor `s`), then `$rest`.
macro_rules! offer_sql {
    ($from:literal, $rest:literal) => {
        concat!(
            "SELECT o.id, o.code, o.client_ref, o.location, o.notes, o.branch, o.timezone, ",
            "o.starts_at, o.ends_at, o.expires_at, o.audience, o.wave_size, o.wave_minutes, ",
            "o.waves_sent, o.next_wave_at, o.status, o.filled_by AS filled_by_id, ",
            "c.external_id AS filled_by, o.filled_at, o.closed_at, o.created_at, ",
            "s.id AS sup_id, s.external_id AS sup_external_id, s.name AS sup_name, ",
            "s.phone AS sup_phone, s.timezone AS sup_timezone",
            $from,
            " LEFT JOIN caregivers c ON c.id = o.filled_by ",
            "LEFT JOIN supervisors s ON s.id = o.supervisor_id ",
            $rest
        )
    };
}

#[derive(FromRow)]
struct ShiftOfferDb {
    id: i64,
    code: i64,
    client_ref: String,
    location: String,
    notes: String,
    branch: String,
    timezone: String,
    starts_at: Ts,
    ends_at: Ts,
    expires_at: Ts,
    audience: String,
    wave_size: i64,
    wave_minutes: i64,
    waves_sent: i64,
    next_wave_at: Option<Ts>,
    status: String,
    filled_by_id: Option<i64>,
    filled_by: Option<String>,
    filled_at: Option<Ts>,
    closed_at: Option<Ts>,
    created_at: Ts,
    sup_id: Option<i64>,
    sup_external_id: Option<String>,
    sup_name: Option<String>,
    sup_phone: Option<String>,
    sup_timezone: Option<String>,
}

fn small(what: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} out of range")))
}

impl ShiftOfferDb {
    fn into_offer(self) -> Result<ShiftOffer> {
        let supervisor = match (self.sup_id, self.sup_external_id) {
            (Some(id), Some(external_id)) => Some(Supervisor {
                id,
                external_id,
                name: self.sup_name.unwrap_or_default(),
                phone: self.sup_phone.unwrap_or_default(),
                timezone: self.sup_timezone.unwrap_or_default(),
                // Shift offers tell the supervisor by SMS (see `shifts.rs`).
                telegram: None,
            }),
            _ => None,
        };
        Ok(ShiftOffer {
            id: self.id,
            code: small("shift code", self.code)?,
            client_ref: self.client_ref,
            location: self.location,
            notes: self.notes,
            branch: self.branch,
            timezone: self.timezone,
            starts_at: self.starts_at.0,
            ends_at: self.ends_at.0,
            expires_at: self.expires_at.0,
            audience: self.audience,
            supervisor,
            wave_size: small("wave size", self.wave_size)?,
            wave_minutes: small("wave minutes", self.wave_minutes)?,
            waves_sent: small("waves sent", self.waves_sent)?,
            next_wave_at: self.next_wave_at.map(|t| t.0),
            status: parse("shift status", &self.status)?,
            filled_by_id: self.filled_by_id,
            filled_by: self.filled_by,
            filled_at: self.filled_at.map(|t| t.0),
            closed_at: self.closed_at.map(|t| t.0),
            created_at: self.created_at.0,
        })
    }
}

#[derive(FromRow)]
struct HeldDb {
    #[sqlx(flatten)]
    offer: ShiftOfferDb,
    sent_at: Ts,
    answer: Option<String>,
}

#[derive(FromRow)]
struct ListingDb {
    #[sqlx(flatten)]
    offer: ShiftOfferDb,
    n_sent: i64,
    n_yes: i64,
    n_no: i64,
}

// ---------------------------------------------------------------------------------------------
// SQL

/// Why a YES by caregiver `$2` at `$3` did not take offer `o` (`$1`): it is already theirs, or
/// someone else's, or still open (so the overlap check refused it), or closed.
macro_rules! claim_outcome_sql {
    () => {
        "CASE WHEN o.status = 'filled' AND o.filled_by = $2 THEN 'again' \
         WHEN o.status = 'filled' THEN 'filled' \
         WHEN o.status = 'open' AND o.expires_at > $3 THEN 'clash' ELSE 'closed' END"
    };
}

// The same bounds as `sql/mod.rs`: everything the shared code asks of a database.
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
    async fn offer_in(conn: &mut DB::Connection, id: i64) -> Result<Option<ShiftOffer>> {
        let row: Option<ShiftOfferDb> =
            sqlx::query_as(offer_sql!(" FROM shift_offers o", "WHERE o.id = $1"))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        row.map(ShiftOfferDb::into_offer).transpose()
    }

    /// The offers a caregiver was texted whose shift has not ended, newest first: what an
    /// inbound YES or NO may be about.
    pub(super) async fn held_shifts(
        conn: &mut DB::Connection,
        caregiver_id: i64,
        now: Ts,
    ) -> Result<Vec<HeldShift>> {
        let rows: Vec<HeldDb> = sqlx::query_as(offer_sql!(
            ", r.sent_at, r.answer FROM shift_offer_recipients r \
             JOIN shift_offers o ON o.id = r.offer_id",
            "WHERE r.caregiver_id = $1 AND o.ends_at > $2 ORDER BY r.sent_at DESC, o.id DESC \
             LIMIT 20"
        ))
        .bind(caregiver_id)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                let offer = r.offer.into_offer()?;
                Ok(HeldShift {
                    won: offer.status == ShiftStatus::Filled
                        && offer.filled_by_id == Some(caregiver_id),
                    offer,
                    sent_at: r.sent_at.0,
                    answer: r
                        .answer
                        .as_deref()
                        .map(|a| parse("shift answer", a))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Applies a YES: the conditional award, the answer, and the messages of the outcome.
    pub(super) async fn claim_shift(
        conn: &mut DB::Connection,
        caregiver_id: i64,
        now: Ts,
        claim: &ShiftClaim,
        held: &[HeldShift],
    ) -> Result<ClaimOutcome> {
        // One caregiver's YES to two overlapping shifts, handled at once on two instances, take
        // turns here, so that the overlap check in the award sees the other's. Only needed when
        // this caregiver holds another overlapping offer that is open (or theirs) in this
        // transaction's snapshot: an offer sent after that snapshot was read cannot have been
        // answered yet, because its text goes out only once its wave has committed.
        let overlapping = match held.iter().find(|h| h.offer.id == claim.offer_id) {
            Some(this) => held.iter().any(|h| {
                h.offer.id != claim.offer_id
                    && (h.offer.status == ShiftStatus::Open || h.won)
                    && h.offer.starts_at < this.offer.ends_at
                    && h.offer.ends_at > this.offer.starts_at
            }),
            None => true,
        };
        if let (Some(lock), true) = (DB::LOCK_CAREGIVER, overlapping) {
            sqlx::query(lock)
                .bind(caregiver_id)
                .execute(&mut *conn)
                .await?;
        }
        // The award: one statement, so exactly one YES ever sees a row change.
        let awarded = sqlx::query(
            "UPDATE shift_offers SET status = 'filled', filled_by = $2, filled_at = $3, \
             closed_at = $3, next_wave_at = NULL, updated_at = $3 \
             WHERE id = $1 AND status = 'open' AND expires_at > $3 \
             AND NOT EXISTS (SELECT 1 FROM shift_offers mine WHERE mine.filled_by = $2 \
                 AND mine.status = 'filled' AND mine.starts_at < shift_offers.ends_at \
                 AND mine.ends_at > shift_offers.starts_at)",
        )
        .bind(claim.offer_id)
        .bind(caregiver_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let won = DB::rows_affected(&awarded) == 1;
        // Record the answer (a YES after a NO counts: a change of mind; a second YES changes
        // nothing stored) and, for a YES that did not win, why: one statement either way.
        let recorded: Option<(String,)> = sqlx::query_as(concat!(
            "UPDATE shift_offer_recipients SET answer = 'yes', answered_at = $3, outcome = ",
            "CASE WHEN $4 THEN 'won' ELSE (SELECT ",
            claim_outcome_sql!(),
            " FROM shift_offers o WHERE o.id = $1) END ",
            "WHERE offer_id = $1 AND caregiver_id = $2 AND (answer IS NULL OR answer = 'no') ",
            "RETURNING outcome"
        ))
        .bind(claim.offer_id)
        .bind(caregiver_id)
        .bind(now)
        .bind(won)
        .fetch_optional(&mut *conn)
        .await?;
        let outcome = match recorded {
            Some((outcome,)) => outcome,
            // Already answered YES before: nothing to record, only the reason to read.
            None => {
                let reason: Option<(String,)> = sqlx::query_as(concat!(
                    "SELECT ",
                    claim_outcome_sql!(),
                    " FROM shift_offers o WHERE o.id = $1"
                ))
                .bind(claim.offer_id)
                .bind(caregiver_id)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                reason
                    .ok_or_else(|| {
                        StoreError::InvalidPlan(format!(
                            "ClaimShift: no shift offer {}",
                            claim.offer_id
                        ))
                    })?
                    .0
            }
        };
        let outcome = match outcome.as_str() {
            "won" => ClaimOutcome::Won,
            "again" => ClaimOutcome::Again,
            "filled" => ClaimOutcome::Filled,
            "clash" => ClaimOutcome::Clash,
            "closed" => ClaimOutcome::Closed,
            other => {
                return Err(StoreError::Corrupt(format!("claim outcome {other:?}")));
            }
        };
        if outcome == ClaimOutcome::Won {
            Self::suppress_offer_texts(conn, claim.offer_id, now).await?;
        }
        for message in claim.messages(outcome) {
            Self::insert_outbound(conn, message, now).await?;
        }
        Ok(outcome)
    }

    /// Applies a NO: remembered, so the offer no longer counts as held.
    pub(super) async fn decline_shift(
        conn: &mut DB::Connection,
        caregiver_id: i64,
        now: Ts,
        offer_id: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE shift_offer_recipients SET answer = 'no', outcome = 'declined', \
             answered_at = $3 WHERE offer_id = $1 AND caregiver_id = $2 AND answer IS NULL",
        )
        .bind(offer_id)
        .bind(caregiver_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Offer texts still waiting in the outbox (quiet hours, pacing) when the offer closes are
    /// never sent: an "open shift" text about a filled shift would only mislead.
    async fn suppress_offer_texts(conn: &mut DB::Connection, offer_id: i64, now: Ts) -> Result<()> {
        sqlx::query(
            "UPDATE outbound_messages SET status = 'suppressed', updated_at = $2 \
             WHERE status = 'queued' AND id IN (SELECT outbound_id FROM shift_offer_recipients \
             WHERE offer_id = $1 AND outbound_id IS NOT NULL)",
        )
        .bind(offer_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Queues a message and returns its id: encoded as every path encodes a queued message,
    /// so a shift text has its `conversation_id` (none) like any other.
    async fn insert_outbound(
        conn: &mut DB::Connection,
        outbound: &NewOutbound,
        now: Ts,
    ) -> Result<i64> {
        let conversation = outbound
            .conversation
            .map(|c| conversation_id(c, None))
            .transpose()?;
        let row = OutboundInsert::encode(outbound.clone(), conversation, &now);
        let mut insert = QueryBuilder::<DB>::new(OutboundInsert::<Ts>::INSERT);
        insert.push_values([&row], |values, row| row.bind(values));
        insert.push(" RETURNING id");
        let (id,): (i64,) = insert.build_query_as().fetch_one(&mut *conn).await?;
        Ok(id)
    }

    pub(super) async fn insert_shift_offer(&self, new: &NewShiftOffer) -> Result<ShiftOffer> {
        let now = Ts(new.created_at);
        // Two offers created at the same moment on PostgreSQL may pick the same free code; the
        // unique index refuses the second, which tries again with the next.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
            let open: Vec<(i64,)> =
                sqlx::query_as("SELECT code FROM shift_offers WHERE status = 'open'")
                    .fetch_all(&mut *tx)
                    .await?;
            let open: HashSet<u32> = open
                .into_iter()
                .filter_map(|(c,)| u32::try_from(c).ok())
                .collect();
            let last: Option<(i64,)> =
                sqlx::query_as("SELECT code FROM shift_offers ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            let code = next_code(last.and_then(|(c,)| u32::try_from(c).ok()), &open);
            let inserted: std::result::Result<(i64,), sqlx::Error> = sqlx::query_as(
                "INSERT INTO shift_offers (code, client_ref, location, notes, branch, timezone, \
                 starts_at, ends_at, expires_at, audience, supervisor_id, wave_size, \
                 wave_minutes, waves_sent, next_wave_at, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 (SELECT id FROM supervisors WHERE external_id = $11), $12, $13, 0, $15, 'open', \
                 $14, $14) RETURNING id",
            )
            .bind(i64::from(code))
            .bind(new.client_ref.clone())
            .bind(new.location.clone())
            .bind(new.notes.clone())
            .bind(new.branch.clone())
            .bind(new.timezone.clone())
            .bind(Ts(new.starts_at))
            .bind(Ts(new.ends_at))
            .bind(Ts(new.expires_at))
            .bind(new.audience.clone())
            .bind(new.supervisor.clone())
            .bind(i64::from(new.wave_size))
            .bind(i64::from(new.wave_minutes))
            .bind(now)
            // The creator sends the first wave at once (ShiftTrigger::Create); the scheduler
            // sends it a minute later only if the creator died before it could.
            .bind(Ts(now.0 + Duration::minutes(1)))
            .fetch_one(&mut *tx)
            .await;
            let id = match inserted {
                Ok((id,)) => id,
                Err(e)
                    if attempt < 5
                        && e.as_database_error()
                            .is_some_and(|d| d.is_unique_violation()) =>
                {
                    tx.rollback().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let offer = Self::offer_in(&mut *tx, id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("shift offer {id} vanished")))?;
            tx.commit().await?;
            return Ok(offer);
        }
    }

    pub(super) async fn list_shift_offers(
        &self,
        status: Option<ShiftStatus>,
    ) -> Result<Vec<ShiftListing>> {
        let rows: Vec<ListingDb> = sqlx::query_as(offer_sql!(
            ", (SELECT COUNT(*) FROM shift_offer_recipients r WHERE r.offer_id = o.id) AS n_sent, \
             (SELECT COUNT(*) FROM shift_offer_recipients r \
                 WHERE r.offer_id = o.id AND r.answer = 'yes') AS n_yes, \
             (SELECT COUNT(*) FROM shift_offer_recipients r \
                 WHERE r.offer_id = o.id AND r.answer = 'no') AS n_no \
             FROM shift_offers o",
            "WHERE ($1 IS NULL OR o.status = $1) ORDER BY o.id"
        ))
        .bind(status.map(|s| s.as_str().to_owned()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ShiftListing {
                    offer: r.offer.into_offer()?,
                    sent: small("recipients", r.n_sent)?,
                    yes: small("yes answers", r.n_yes)?,
                    no: small("no answers", r.n_no)?,
                })
            })
            .collect()
    }

    pub(super) async fn select_due_shift_offers(
        &self,
        now: Ts,
        limit: u32,
    ) -> Result<Vec<ShiftOffer>> {
        let rows: Vec<ShiftOfferDb> = sqlx::query_as(offer_sql!(
            " FROM shift_offers o",
            "WHERE o.status = 'open' AND (o.expires_at <= $1 OR o.next_wave_at <= $1) \
             ORDER BY o.id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ShiftOfferDb::into_offer).collect()
    }

    pub(super) async fn select_supervisors_of_branch(
        &self,
        branch: &str,
    ) -> Result<Vec<super::SupervisorRecord>> {
        let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT external_id, name, phone, email, branch, timezone FROM supervisors \
             WHERE branch = $1 ORDER BY external_id",
        )
        .bind(branch.to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(external_id, name, phone, email, branch, timezone)| super::SupervisorRecord {
                    external_id,
                    name,
                    phone,
                    email,
                    branch,
                    timezone,
                },
            )
            .collect())
    }

    /// Locks offer `id` for `trigger`, reads its snapshot, decides, applies: one transaction.
    // Long because lock, snapshot, decide and apply are one transaction; each write is a few lines.
    pub(super) async fn lock_and_handle_shift_offer(
        &self,
        id: i64,
        trigger: ShiftTrigger,
        now: Ts,
        audience: &[Caregiver],
        decide: &ShiftDecide<'_>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        // The lock, as an UPDATE so it needs no dialect: on PostgreSQL a second instance waits
        // here and then re-checks the condition on the committed row; on SQLite the write
        // transaction is already exclusive.
        let lock = match trigger {
            ShiftTrigger::Create => {
                "UPDATE shift_offers SET updated_at = $2 WHERE id = $1 AND status = 'open' \
                 AND waves_sent = 0"
            }
            ShiftTrigger::Due => {
                "UPDATE shift_offers SET updated_at = $2 WHERE id = $1 AND status = 'open' \
                 AND (expires_at <= $2 OR next_wave_at <= $2)"
            }
            ShiftTrigger::Cancel => {
                "UPDATE shift_offers SET updated_at = $2 WHERE id = $1 \
                 AND status IN ('open', 'filled')"
            }
        };
        let locked = sqlx::query(lock)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&locked) == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let offer = Self::offer_in(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("shift offer {id} vanished")))?;
        let recipients: Vec<(i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT caregiver_id, wave, answer FROM shift_offer_recipients WHERE offer_id = $1 \
             ORDER BY wave, caregiver_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let recipients = recipients
            .into_iter()
            .map(|(caregiver_id, wave, answer)| {
                Ok(ShiftRecipient {
                    caregiver_id,
                    wave: small("wave", wave)?,
                    answer: answer
                        .as_deref()
                        .map(|a| parse("shift answer", a))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let winner = match offer.filled_by_id {
            Some(cid) => Self::load_caregiver(&mut *tx, super::sql::Filter::Id(cid)).await?,
            None => None,
        };
        let wave_due = offer.status == ShiftStatus::Open
            && offer.expires_at > now.0
            && match trigger {
                ShiftTrigger::Create => offer.waves_sent == 0,
                ShiftTrigger::Due => offer.next_wave_at.is_some_and(|t| t <= now.0),
                ShiftTrigger::Cancel => false,
            };
        let candidates = if wave_due {
            let sent: HashSet<i64> = recipients.iter().map(|r| r.caregiver_id).collect();
            let fresh: Vec<&Caregiver> =
                audience.iter().filter(|c| !sent.contains(&c.id)).collect();
            Self::candidates(&mut *tx, &offer, &fresh, now).await?
        } else {
            Vec::new()
        };
        let snapshot = ShiftSnapshot {
            offer,
            trigger,
            recipients,
            winner,
            candidates,
        };
        let plan = decide(&snapshot).map_err(StoreError::Decide)?;
        for write in &plan.writes {
            match write {
                ShiftWrite::Close { status } => {
                    sqlx::query(
                        "UPDATE shift_offers SET status = $2, closed_at = $3, \
                         next_wave_at = NULL, updated_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(status.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Self::suppress_offer_texts(&mut *tx, id, now).await?;
                }
                ShiftWrite::Offer {
                    caregiver_id,
                    wave,
                    outbound,
                } => {
                    let outbound_id = Self::insert_outbound(&mut *tx, outbound, now).await?;
                    sqlx::query(
                        "INSERT INTO shift_offer_recipients (offer_id, caregiver_id, wave, \
                         outbound_id, sent_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(*caregiver_id)
                    .bind(i64::from(*wave))
                    .bind(outbound_id)
                    .bind(Ts(outbound.not_before.max(now.0)))
                    .execute(&mut *tx)
                    .await?;
                }
                ShiftWrite::Wave {
                    waves_sent,
                    next_at,
                } => {
                    sqlx::query(
                        "UPDATE shift_offers SET waves_sent = $2, next_wave_at = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(i64::from(*waves_sent))
                    .bind(next_at.map(Ts))
                    .execute(&mut *tx)
                    .await?;
                }
                ShiftWrite::Outbound(outbound) => {
                    Self::insert_outbound(&mut *tx, outbound, now).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Eligibility and ranking data for caregivers not yet texted this offer.
    async fn candidates(
        conn: &mut DB::Connection,
        offer: &ShiftOffer,
        people: &[&Caregiver],
        now: Ts,
    ) -> Result<Vec<ShiftCandidate>> {
        if people.is_empty() {
            return Ok(Vec::new());
        }
        let mut consent: HashMap<String, ConsentStatus> = HashMap::new();
        for chunk in people.chunks(500) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT address, status FROM subscriptions WHERE channel = 'sms' AND address IN (",
            );
            let mut list = q.separated(", ");
            for c in chunk {
                list.push_bind(c.phone.clone());
            }
            q.push(")");
            let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
            for (address, status) in rows {
                consent.insert(address, parse("consent status", &status)?);
            }
        }
        let wins: Vec<(i64, i64, Option<Ts>)> = sqlx::query_as(
            "SELECT filled_by, COUNT(*), MAX(filled_at) FROM shift_offers \
             WHERE status = 'filled' AND filled_by IS NOT NULL AND filled_at > $1 \
             GROUP BY filled_by",
        )
        .bind(Ts(now.0 - Duration::days(7)))
        .fetch_all(&mut *conn)
        .await?;
        let wins: HashMap<i64, (i64, Option<Ts>)> =
            wins.into_iter().map(|(id, n, at)| (id, (n, at))).collect();
        let clashes: Vec<(i64,)> = sqlx::query_as(
            "SELECT DISTINCT filled_by FROM shift_offers WHERE status = 'filled' \
             AND filled_by IS NOT NULL AND starts_at < $1 AND ends_at > $2",
        )
        .bind(Ts(offer.ends_at))
        .bind(Ts(offer.starts_at))
        .fetch_all(&mut *conn)
        .await?;
        let clashes: HashSet<i64> = clashes.into_iter().map(|(id,)| id).collect();
        let held: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT r.caregiver_id, COUNT(*) FROM shift_offer_recipients r \
             JOIN shift_offers o ON o.id = r.offer_id \
             WHERE o.status = 'open' AND o.id <> $1 AND r.answer IS NULL GROUP BY r.caregiver_id",
        )
        .bind(offer.id)
        .fetch_all(&mut *conn)
        .await?;
        let held: HashMap<i64, i64> = held.into_iter().collect();
        people
            .iter()
            .map(|c| {
                let (won, last) = wins.get(&c.id).cloned().unwrap_or((0, None));
                Ok(ShiftCandidate {
                    consent: consent
                        .get(&c.phone)
                        .copied()
                        .unwrap_or(ConsentStatus::Unknown),
                    won_this_week: small("shifts won", won)?,
                    last_won_at: last.map(|t| t.0),
                    clash: clashes.contains(&c.id),
                    open_offers_held: small("open offers", held.get(&c.id).copied().unwrap_or(0))?,
                    caregiver: (*c).clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_go_round_and_skip_open_offers() {
        let none = HashSet::new();
        assert_eq!(next_code(None, &none), 10);
        assert_eq!(next_code(Some(10), &none), 11);
        assert_eq!(next_code(Some(99), &none), 10);
        let open: HashSet<u32> = [11, 12].into();
        assert_eq!(next_code(Some(10), &open), 13);
        let all: HashSet<u32> = (10..=99).collect();
        assert_eq!(next_code(Some(50), &all), 100);
    }
}
