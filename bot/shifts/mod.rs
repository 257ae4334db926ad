//! Shift offers: an open shift texted to eligible caregivers, in waves; the first YES takes it,
//! everyone after hears "already filled", the offer expires at its deadline, and the supervisor
//! is told who took it (or that nobody did). Like the runner, this module only decides: pure
//! functions read a store snapshot and return writes, which the store applies in one
//! transaction (`store/shifts.rs` has the SQL, including the one conditional award).
//!
//! Where this sits in the data path:
//! - `carebot shifts offer` creates the offer and sends the first wave ([`Runner::offer_shift`]);
//! - an inbound YES or NO is recognised by [`Runner::decide_shift_reply`], which the runner asks
//!   right after consent keywords and before any flow;
//! - the scheduler sends later waves and expires offers ([`Runner::run_due_shifts`]).
//!
//! Choices the issue left open, in one place:
//! - **Time zone**: a branch's time is its supervisors' time zone (they schedule the shifts and
//!   sit in the branch's office; caregivers may live across a zone line). A branch with no
//!   supervisor on the roster takes its caregivers' most common zone. Texts show times in that
//!   zone, with the zone's abbreviation added for a caregiver whose own zone differs.
//! - **Eligible**: active, opted in on SMS, in the audience, not yet texted this offer, and not
//!   holding an accepted shift that overlaps it.
//! - **Ranking for waves**: fewest shifts won in the last seven days first; then whoever won
//!   one longest ago (never first); then roster order. The same few people do not get every
//!   shift, and among equals nobody is favoured by chance.
//! - **Short codes**: every offer has a two-digit code unique among open offers. A caregiver
//!   who already holds another unanswered open offer sees it in the text ("reply YES 14"); a
//!   bare YES with several open offers gets a list to choose from. Telegram buttons always
//!   carry the code.
//! - **Supervisor alerts**: "filled" is normal priority (good news: the client is covered and
//!   the caregiver has the details, so it waits for the supervisor's window rather than waking
//!   them; a night text that needs no action teaches people to ignore night texts). "Nobody took
//!   it" is high priority and goes at any hour: a client is about to go without care.
//! - **Quiet hours**: offer texts are program messages and wait for the caregiver's window; a
//!   caregiver whose window opens only after the deadline is not texted. Answers to a YES or NO
//!   are replies and go at once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::{Address, Channel, Lang};
use crate::model::{
    Audience, Caregiver, ConsentStatus, DecideError, HeldShift, Inbound, NewOutbound,
    NewShiftOffer, OutboundKind, Plan, ShiftAnswer, ShiftClaim, ShiftListing, ShiftOffer,
    ShiftPlan, ShiftSnapshot, ShiftStatus, ShiftTrigger, ShiftWrite, Snapshot, Write,
};
use crate::quiet_hours;
use crate::render::shifts::{ShiftMessage, ShiftView, Tally, view, who};
use crate::runner::Runner;
use crate::sms::segments;
use crate::store::{Store, StoreError};

mod reply;
pub use reply::{ShiftReply, parse_reply};

/// An outbound message, with its encoding and segments worked out.
fn outbound(
    address: Address,
    caregiver_id: Option<i64>,
    kind: OutboundKind,
    body: String,
    buttons: Vec<(String, String)>,
    not_before: DateTime<Utc>,
) -> NewOutbound {
    let seg = segments::analyze(&body);
    NewOutbound {
        address,
        caregiver_id,
        conversation: None,
        kind,
        encoding: match seg.encoding {
            segments::Encoding::Gsm7 => "gsm7".into(),
            segments::Encoding::Ucs2 => "ucs2".into(),
        },
        segments: seg.segments,
        body,
        not_before,
        buttons,
    }
}

/// YES / NO buttons for channels that have them. The payload always carries the code, so a
/// tap is never ambiguous.
fn buttons(lang: Lang, code: u32) -> Vec<(String, String)> {
    let yes = match lang {
        Lang::En => "YES",
        Lang::Es => "SI",
    };
    vec![
        (yes.to_owned(), format!("YES {code}")),
        ("NO".to_owned(), format!("NO {code}")),
    ]
}

// ---------------------------------------------------------------------------------------------
// Deciding

/// How the first wave of a new offer (or a later one) went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaveReport {
    pub sent: usize,
    /// Caregivers of the audience not texted, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Eligible caregivers kept for later waves.
    pub later: usize,
}

/// What `carebot shifts offer` did.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferReport {
    pub offer: ShiftOffer,
    pub wave: WaveReport,
}

/// A new offer as the runner takes it, parsed at the edge (`carebot shifts offer`, and the
/// console's form): times are wall-clock times in the branch's zone, which only the runner
/// knows (it reads the roster).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRequest {
    pub client_ref: String,
    pub location: String,
    pub notes: String,
    pub audience: Audience,
    /// The audience as the operator wrote it, for messages about it.
    pub audience_text: String,
    pub start: NaiveDateTime,
    pub end: ShiftEnd,
    /// Deadline for a YES; the start of the shift when `None`, and never later than it.
    pub expires: Option<Deadline>,
    /// The branch whose time zone the times are in (default: the audience's branch).
    pub branch: Option<String>,
    /// The supervisor told who took the shift (default: the branch's first supervisor).
    pub supervisor: Option<String>,
    pub wave_size: u32,
    pub wave_minutes: u32,
}

/// When a shift ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftEnd {
    At(NaiveDateTime),
    /// A time of day: the start's day, or the next when it is not after the start.
    Time(NaiveTime),
}

/// When an offer stops taking a YES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A wall-clock time in the branch's zone.
    At(NaiveDateTime),
    /// A delay from now.
    After(std::time::Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ShiftError {
    ShiftError::Invalid(message.into())
}

/// Which of the caregiver's offers a YES or NO is about.
enum Target<'a> {
    One(&'a HeldShift),
    /// A NO to every unanswered open offer.
    All(Vec<&'a HeldShift>),
    /// Several could be meant: list them and ask for the code.
    Choose(Vec<&'a HeldShift>),
}

/// A local time in `tz` as an instant; the earlier of two in the autumn overlap, and an error
/// for a time that does not exist (the spring gap).
fn instant(tz: Tz, local: NaiveDateTime, what: &str) -> Result<DateTime<Utc>, ShiftError> {
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            invalid(format!(
                "{what} {local} does not exist in {tz} (clocks skip it)"
            ))
        })
}

/// The most common value, ties broken by the smallest.
fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values.filter(|v| !v.is_empty()) {
        *counts.entry(v).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, n)| *n == best)
        .map(|(v, _)| v.to_owned())
}

impl<S: Store> Runner<S> {
    fn render_shift(
        &self,
        name: &str,
        lang: Lang,
        msg: &ShiftMessage<'_>,
    ) -> Result<String, DecideError> {
        self.catalog
            .templates
            .render(name, lang, msg)
            .map(|(text, _)| text)
            .map_err(DecideError::from)
    }

    /// A message to the caregiver who wrote, about `held`.
    fn shift_reply(
        &self,
        snap: &Snapshot,
        caregiver: &Caregiver,
        name: &str,
        held: &HeldShift,
        now: DateTime<Utc>,
    ) -> Result<NewOutbound, DecideError> {
        let lang = caregiver.language;
        let shift = view(&held.offer, lang, &caregiver.timezone, false);
        let body = self.render_shift(
            name,
            lang,
            &ShiftMessage {
                agency: &self.settings.agency,
                shift: &shift,
                caregiver: Some(who(caregiver)),
                offers: None,
                tally: None,
            },
        )?;
        Ok(outbound(
            snap.address.clone(),
            Some(caregiver.id),
            OutboundKind::Reply,
            body,
            Vec::new(),
            now,
        ))
    }

    /// The supervisor's "filled" alert: normal priority, in their window (see the module doc).
    fn filled_alert(
        &self,
        caregiver: &Caregiver,
        offer: &ShiftOffer,
        now: DateTime<Utc>,
    ) -> Result<Option<NewOutbound>, DecideError> {
        let Some(sup) = &offer.supervisor else {
            return Ok(None);
        };
        let shift = view(offer, Lang::En, &sup.timezone, false);
        let body = self.render_shift(
            "alerts/shift_filled",
            Lang::En,
            &ShiftMessage {
                agency: &self.settings.agency,
                shift: &shift,
                caregiver: Some(who(caregiver)),
                offers: None,
                tally: None,
            },
        )?;
        let not_before = self
            .settings
            .supervisor_window
            .next_allowed(now, quiet_hours::zone(&sup.timezone));
        Ok(Some(outbound(
            Address::new(Channel::Sms, sup.phone.clone()),
            None,
            OutboundKind::Alert,
            body,
            Vec::new(),
            not_before,
        )))
    }

    /// A YES or NO to a shift offer, read before any flow: `Ok(None)` when the message is not
    /// one (or the caregiver holds no offer it could be about), and the flows take it.
    // Long because it is the whole table of answers to an offer (YES, NO, which offer, a clash,
    // already filled, closed, won) read top to bottom; each case is a few lines.
    pub(crate) fn decide_shift_reply(
        &self,
        snap: &Snapshot,
        inbound: &Inbound,
        caregiver: &Caregiver,
    ) -> Result<Option<Plan>, DecideError> {
        if snap.shifts.is_empty() {
            return Ok(None);
        }
        let Some(reply) = parse_reply(&inbound.text) else {
            return Ok(None);
        };
        let now = inbound.received_at;
        let open = |h: &&HeldShift| h.offer.status == ShiftStatus::Open && h.offer.expires_at > now;
        let unanswered: Vec<&HeldShift> = snap
            .shifts
            .iter()
            .filter(open)
            .filter(|h| h.answer.is_none())
            .collect();
        // With nothing open to answer, a YES or NO is about an offer only when that offer is
        // the latest thing we asked them (no conversation is waiting, or the offer came after
        // it started): a closed offer they never answered ("no longer available"), else a
        // shift they took ("it's yours"). Otherwise it is the flow's answer.
        let latest = |h: &&HeldShift| {
            snap.conversation
                .as_ref()
                .is_none_or(|c| h.sent_at > c.started_at)
        };
        let stale = || {
            snap.shifts
                .iter()
                .filter(latest)
                .find(|h| !open(h) && h.answer.is_none())
                .or_else(|| snap.shifts.iter().filter(latest).find(|h| h.won))
        };
        let target = match (reply.code, reply.answer) {
            (Some(code), _) => {
                let mut coded = snap.shifts.iter().filter(|h| h.offer.code == code);
                match coded.clone().find(open).or_else(|| coded.next()) {
                    Some(h) => Target::One(h),
                    // A code that matches none of theirs: show them the ones that are open.
                    None if !unanswered.is_empty() => Target::Choose(unanswered),
                    None => return Ok(None),
                }
            }
            (None, ShiftAnswer::No) => match unanswered.len() {
                0 => match stale() {
                    Some(h) => Target::One(h),
                    None => return Ok(None),
                },
                1 => Target::One(unanswered[0]),
                _ => Target::All(unanswered),
            },
            (None, ShiftAnswer::Yes) => match unanswered.len() {
                1 => Target::One(unanswered[0]),
                0 => {
                    // A change of mind after a NO, while the offer is still open.
                    let declined: Vec<&HeldShift> = snap
                        .shifts
                        .iter()
                        .filter(open)
                        .filter(|h| h.answer == Some(ShiftAnswer::No))
                        .collect();
                    match declined.len() {
                        0 => match stale() {
                            Some(h) => Target::One(h),
                            None => return Ok(None),
                        },
                        1 => Target::One(declined[0]),
                        _ => Target::Choose(declined),
                    }
                }
                _ => Target::Choose(unanswered),
            },
        };

        let mut writes = Vec::new();
        match (target, reply.answer) {
            (Target::Choose(offers), _) => {
                let lang = caregiver.language;
                let views: Vec<ShiftView> = offers
                    .iter()
                    .map(|h| view(&h.offer, lang, &caregiver.timezone, true))
                    .collect();
                let body = self.render_shift(
                    "shifts/which",
                    lang,
                    &ShiftMessage {
                        agency: &self.settings.agency,
                        shift: &views[0],
                        caregiver: Some(who(caregiver)),
                        offers: Some(&views),
                        tally: None,
                    },
                )?;
                writes.push(Write::Outbound(outbound(
                    snap.address.clone(),
                    Some(caregiver.id),
                    OutboundKind::Reply,
                    body,
                    Vec::new(),
                    now,
                )));
            }
            (Target::All(offers), _) => {
                for h in &offers {
                    writes.push(Write::DeclineShift {
                        offer_id: h.offer.id,
                    });
                }
                writes.push(Write::Outbound(self.shift_reply(
                    snap,
                    caregiver,
                    "shifts/declined",
                    offers[0],
                    now,
                )?));
            }
            (Target::One(h), ShiftAnswer::No) => {
                if h.won {
                    // Giving a shift back is a conversation with a person, not a keyword.
                    writes.push(Write::Outbound(self.shift_reply(
                        snap,
                        caregiver,
                        "shifts/yours",
                        h,
                        now,
                    )?));
                } else {
                    writes.push(Write::DeclineShift {
                        offer_id: h.offer.id,
                    });
                    // A NO to an offer that has closed needs no answer.
                    if open(&h) {
                        writes.push(Write::Outbound(self.shift_reply(
                            snap,
                            caregiver,
                            "shifts/declined",
                            h,
                            now,
                        )?));
                    }
                }
            }
            (Target::One(h), ShiftAnswer::Yes) => {
                // Every outcome the store can still reach is rendered now, and its conditional
                // award picks one. A status only moves forward (open -> filled -> cancelled, or
                // open -> expired), so an offer the snapshot already shows taken needs only
                // the texts of what it can still become: the 199 who lose a race on SQLite
                // render one text each instead of five.
                let reply = |name: &str| self.shift_reply(snap, caregiver, name, h, now);
                let open = h.offer.status == ShiftStatus::Open;
                let mut claim = ShiftClaim {
                    offer_id: h.offer.id,
                    won: Vec::new(),
                    again: Vec::new(),
                    filled: Vec::new(),
                    closed: vec![reply("shifts/closed")?],
                    clash: Vec::new(),
                };
                if open || h.won {
                    let confirmation = reply("shifts/won")?;
                    if open {
                        claim.won.push(confirmation.clone());
                        claim
                            .won
                            .extend(self.filled_alert(caregiver, &h.offer, now)?);
                        claim.clash.push(reply("shifts/clash")?);
                    }
                    claim.again.push(confirmation);
                }
                if open || (h.offer.status == ShiftStatus::Filled && !h.won) {
                    claim.filled.push(reply("shifts/filled")?);
                }
                writes.push(Write::ClaimShift(claim));
            }
        }
        Ok(Some(Plan { writes }))
    }

    /// What happens to an offer the scheduler or `shifts cancel` took: expiry, the next wave,
    /// or cancellation.
    // Long because it is the three things that happen to an offer the clock or a cancel took
    // (expiry, the next wave, cancellation), each with the texts it sends.
    fn decide_shift(
        &self,
        snap: &ShiftSnapshot,
        now: DateTime<Utc>,
        report: &Mutex<WaveReport>,
    ) -> Result<ShiftPlan, DecideError> {
        let offer = &snap.offer;
        let mut writes = Vec::new();
        match snap.trigger {
            ShiftTrigger::Cancel => {
                writes.push(ShiftWrite::Close {
                    status: ShiftStatus::Cancelled,
                });
                if let (ShiftStatus::Filled, Some(c)) = (offer.status, &snap.winner) {
                    let shift = view(offer, c.language, &c.timezone, false);
                    let body = self.render_shift(
                        "shifts/cancelled",
                        c.language,
                        &ShiftMessage {
                            agency: &self.settings.agency,
                            shift: &shift,
                            caregiver: Some(who(c)),
                            offers: None,
                            tally: None,
                        },
                    )?;
                    let not_before = self
                        .settings
                        .caregiver_window
                        .next_allowed(now, quiet_hours::zone(&c.timezone));
                    writes.push(ShiftWrite::Outbound(outbound(
                        Address::new(Channel::Sms, c.phone.clone()),
                        Some(c.id),
                        OutboundKind::Program,
                        body,
                        Vec::new(),
                        not_before,
                    )));
                }
            }
            ShiftTrigger::Due if offer.expires_at <= now => {
                writes.push(ShiftWrite::Close {
                    status: ShiftStatus::Expired,
                });
                if let Some(sup) = &offer.supervisor {
                    let shift = view(offer, Lang::En, &sup.timezone, false);
                    let body = self.render_shift(
                        "alerts/shift_unfilled",
                        Lang::En,
                        &ShiftMessage {
                            agency: &self.settings.agency,
                            shift: &shift,
                            caregiver: None,
                            offers: None,
                            tally: Some(Tally {
                                offered: snap.recipients.len(),
                                declined: snap
                                    .recipients
                                    .iter()
                                    .filter(|r| r.answer == Some(ShiftAnswer::No))
                                    .count(),
                            }),
                        },
                    )?;
                    // High priority, at any hour: a client is about to go without care.
                    writes.push(ShiftWrite::Outbound(outbound(
                        Address::new(Channel::Sms, sup.phone.clone()),
                        None,
                        OutboundKind::Alert,
                        body,
                        Vec::new(),
                        now,
                    )));
                }
            }
            ShiftTrigger::Due | ShiftTrigger::Create => {
                let mut wave = WaveReport::default();
                let mut eligible = Vec::new();
                for c in &snap.candidates {
                    let reason = if !c.caregiver.active {
                        Some("inactive")
                    } else if c.consent == ConsentStatus::OptedOut {
                        Some("opted out")
                    } else if c.consent != ConsentStatus::OptedIn {
                        Some("no consent")
                    } else if c.clash {
                        Some("overlapping shift")
                    } else {
                        None
                    };
                    match reason {
                        Some(r) => *wave.skipped.entry(r).or_default() += 1,
                        None => eligible.push(c),
                    }
                }
                // The declared rule: fewest shifts won this week, then longest since the last
                // one (never first), then roster order.
                eligible.sort_by_key(|c| (c.won_this_week, c.last_won_at, c.caregiver.id));
                let take = if offer.wave_size == 0 {
                    eligible.len()
                } else {
                    (offer.wave_size as usize).min(eligible.len())
                };
                let number = offer.waves_sent + 1;
                let mut latest = now;
                for c in &eligible[..take] {
                    let person = &c.caregiver;
                    let not_before = self
                        .settings
                        .caregiver_window
                        .next_allowed(now, quiet_hours::zone(&person.timezone));
                    if not_before >= offer.expires_at {
                        *wave.skipped.entry("asleep until the deadline").or_default() += 1;
                        continue;
                    }
                    latest = latest.max(not_before);
                    let lang = person.language;
                    let shift = view(offer, lang, &person.timezone, c.open_offers_held > 0);
                    let body = self.render_shift(
                        "shifts/offer",
                        lang,
                        &ShiftMessage {
                            agency: &self.settings.agency,
                            shift: &shift,
                            caregiver: Some(who(person)),
                            offers: None,
                            tally: None,
                        },
                    )?;
                    writes.push(ShiftWrite::Offer {
                        caregiver_id: person.id,
                        wave: number,
                        outbound: outbound(
                            Address::new(Channel::Sms, person.phone.clone()),
                            Some(person.id),
                            OutboundKind::Program,
                            body,
                            buttons(lang, offer.code),
                            not_before,
                        ),
                    });
                    wave.sent += 1;
                }
                wave.later = eligible.len() - take;
                // The next wave comes T minutes after this one reaches phones (which quiet hours
                // may delay), and only while someone is left to ask.
                let next_at = (wave.later > 0)
                    .then(|| latest + Duration::minutes(i64::from(offer.wave_minutes)));
                writes.push(ShiftWrite::Wave {
                    waves_sent: number,
                    next_at,
                });
                *report.lock().expect("wave report poisoned") = wave;
            }
        }
        Ok(ShiftPlan { writes })
    }

    /// Handles one offer in one transaction; false when it no longer needed handling.
    async fn handle_offer(
        &self,
        offer: &ShiftOffer,
        trigger: ShiftTrigger,
        now: DateTime<Utc>,
    ) -> Result<(bool, WaveReport), ShiftError> {
        let wave_due = offer.expires_at > now
            && match trigger {
                ShiftTrigger::Create => offer.waves_sent == 0,
                ShiftTrigger::Due => offer.next_wave_at.is_some_and(|t| t <= now),
                ShiftTrigger::Cancel => false,
            };
        let audience = if wave_due {
            // As stored: its numbers were checked when the offer was made, and an erasure may
            // since have taken the last one out (`phone:`, nobody).
            let audience = crate::model::Audience::parse_stored(&offer.audience)
                .map_err(|e| invalid(format!("offer {}: {e}", offer.id)))?;
            self.store.audience(&audience).await?
        } else {
            Vec::new()
        };
        let report = Mutex::new(WaveReport::default());
        let decide = |snap: &ShiftSnapshot| self.decide_shift(snap, now, &report);
        let handled = self
            .store
            .handle_shift_offer(offer.id, trigger, now, &audience, &decide)
            .await?;
        Ok((handled, report.into_inner().expect("wave report poisoned")))
    }

    /// Sends due waves and expires offers past their deadline; returns how many offers it
    /// handled. Safe to run on several instances at once: each offer is taken in its own
    /// transaction, and only one instance finds it still due.
    pub async fn run_due_shifts(&self, now: DateTime<Utc>) -> Result<usize, ShiftError> {
        let mut handled = 0;
        for offer in self.store.due_shift_offers(now, 100).await? {
            if self.handle_offer(&offer, ShiftTrigger::Due, now).await?.0 {
                handled += 1;
            }
        }
        Ok(handled)
    }

    /// Creates an offer and sends its first wave now.
    // Long because it resolves a request against the roster in the order an operator's
    // mistakes should be reported: audience, branch and its zone, times, deadline, supervisor.
    pub async fn offer_shift(
        &self,
        request: &OfferRequest,
        now: DateTime<Utc>,
    ) -> Result<OfferReport, ShiftError> {
        let audience = &request.audience;
        let people = self.store.audience(audience).await?;

        // The branch, and its time zone.
        let branch = match (&request.branch, audience) {
            (Some(b), _) => b.clone(),
            (None, crate::model::Audience::Branch(b)) => b.clone(),
            (None, _) => {
                let mut branches: Vec<&str> = people.iter().map(|c| c.branch.as_str()).collect();
                branches.sort_unstable();
                branches.dedup();
                match branches.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => {
                        return Err(invalid(format!(
                            "nobody active is in {:?}",
                            request.audience_text
                        )));
                    }
                    many => {
                        return Err(invalid(format!(
                            "the audience spans branches ({}): say whose time the shift is in \
                             with --branch",
                            many.join(", ")
                        )));
                    }
                }
            }
        };
        let supervisors = self.store.supervisors_of_branch(&branch).await?;
        let timezone = match most_common(supervisors.iter().map(|s| s.timezone.as_str())) {
            Some(tz) => tz,
            None => {
                let in_branch = self
                    .store
                    .audience(&crate::model::Audience::Branch(branch.clone()))
                    .await?;
                most_common(in_branch.iter().map(|c| c.timezone.as_str())).ok_or_else(|| {
                    invalid(format!(
                        "branch {branch:?} has no supervisor or caregiver on the roster to take \
                         a time zone from"
                    ))
                })?
            }
        };
        let tz: Tz = timezone.parse().map_err(|_| {
            invalid(format!(
                "branch {branch:?} has an unknown time zone {timezone:?}"
            ))
        })?;

        // The times, read in the branch's zone.
        let start_local = request.start;
        let end_local = match request.end {
            ShiftEnd::At(t) => t,
            ShiftEnd::Time(time) => {
                let same_day = start_local.date().and_time(time);
                if same_day > start_local {
                    same_day
                } else {
                    same_day + Duration::days(1)
                }
            }
        };
        let starts_at = instant(tz, start_local, "--start")?;
        let ends_at = instant(tz, end_local, "--end")?;
        if ends_at <= starts_at {
            return Err(invalid("--end must be after --start"));
        }
        if starts_at <= now {
            return Err(invalid(format!(
                "--start {} ({timezone}) has already passed",
                start_local.format("%Y-%m-%d %H:%M")
            )));
        }
        let expires_at = match request.expires {
            None => starts_at,
            Some(deadline) => {
                let at = match deadline {
                    Deadline::At(local) => instant(tz, local, "--expires")?,
                    Deadline::After(d) => {
                        now + Duration::from_std(d).map_err(|_| invalid("--expires is too far"))?
                    }
                };
                if at <= now {
                    return Err(invalid(format!(
                        "--expires {} has already passed",
                        at.with_timezone(&tz).format("%Y-%m-%d %H:%M")
                    )));
                }
                at.min(starts_at)
            }
        };
        let supervisor = match &request.supervisor {
            Some(id) => {
                if !self.store.supervisor_ids().await?.contains(id) {
                    return Err(invalid(format!("no supervisor with external id {id:?}")));
                }
                Some(id.clone())
            }
            None => supervisors.first().map(|s| s.external_id.clone()),
        };
        let offer = self
            .store
            .create_shift_offer(&NewShiftOffer {
                client_ref: request.client_ref.clone(),
                location: request.location.clone(),
                notes: request.notes.clone(),
                branch,
                timezone,
                starts_at,
                ends_at,
                expires_at,
                audience: request.audience_text.trim().to_owned(),
                supervisor,
                wave_size: request.wave_size,
                wave_minutes: request.wave_minutes.max(1),
                created_at: now,
            })
            .await?;
        let (_, wave) = self.handle_offer(&offer, ShiftTrigger::Create, now).await?;
        let offer = self
            .shift(offer.id)
            .await?
            .map(|l| l.offer)
            .unwrap_or(offer);
        Ok(OfferReport { offer, wave })
    }

    async fn shift(&self, id: i64) -> Result<Option<ShiftListing>, ShiftError> {
        Ok(self
            .store
            .shift_offers(None)
            .await?
            .into_iter()
            .find(|l| l.offer.id == id))
    }

    /// Cancels an open or filled offer. Offer texts still queued are dropped; a caregiver who
    /// had taken it is told (in their window). Returns the status it had.
    pub async fn cancel_shift(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<ShiftStatus, ShiftError> {
        let listing = self
            .shift(id)
            .await?
            .ok_or_else(|| invalid(format!("no shift offer {id}")))?;
        let was = listing.offer.status;
        if self
            .handle_offer(&listing.offer, ShiftTrigger::Cancel, now)
            .await?
            .0
        {
            Ok(was)
        } else {
            let now_status = self.shift(id).await?.map_or(was, |l| l.offer.status);
            Err(invalid(format!(
                "offer {id} is {} and cannot be cancelled",
                now_status.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_time_in_the_spring_gap_is_refused() {
        let tz = chrono_tz::America::Chicago;
        let local = |s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        let gap = local("2026-03-08 02:30");
        assert!(instant(tz, gap, "--start").is_err());
        let overlap = local("2026-11-01 01:30");
        // The first of the two 01:30s (still daylight time, UTC-5).
        assert_eq!(
            instant(tz, overlap, "--start").unwrap().to_rfc3339(),
            "2026-11-01T06:30:00+00:00"
        );
    }

    #[test]
    fn the_most_common_zone_wins_ties_by_name() {
        assert_eq!(
            most_common(["b", "a", "b", "a", "c"].into_iter()),
            Some("a".to_owned())
        );
        assert_eq!(most_common(std::iter::empty()), None);
    }
}
