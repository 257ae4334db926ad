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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::catalog::{Report, sample_agency, stats};
use crate::domain::{Address, Channel, Lang};
use crate::flow::{Problem, Severity};
use crate::model::{
    Caregiver, ConsentStatus, HeldShift, Inbound, NewOutbound, NewShiftOffer, OutboundKind, Plan,
    ShiftAnswer, ShiftClaim, ShiftListing, ShiftOffer, ShiftPlan, ShiftSnapshot, ShiftStatus,
    ShiftTrigger, ShiftWrite, Snapshot, Write,
};
use crate::quiet_hours;
use crate::render::{Agency, Templates};
use crate::runner::Runner;
use crate::sms::segments;
use crate::store::{Store, StoreError};
use crate::text;

// ---------------------------------------------------------------------------------------------
// Templates

/// What a shift template is rendered with, so that `flows check` renders each the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `caregiver`, `agency`, `shift`.
    Caregiver,
    /// The same, plus `offers`: the open offers to choose from.
    Choice,
    /// To a supervisor, about a caregiver: `caregiver`, `agency`, `shift`. English.
    Alert,
    /// To a supervisor, about nobody: `agency`, `shift`, `tally`. English.
    Unfilled,
}

/// Every template shift offers send; `flows check` requires them and renders each.
pub const SHIFT_TEMPLATES: &[(&str, Shape)] = &[
    ("shifts/offer", Shape::Caregiver),
    ("shifts/won", Shape::Caregiver),
    ("shifts/filled", Shape::Caregiver),
    ("shifts/closed", Shape::Caregiver),
    ("shifts/clash", Shape::Caregiver),
    ("shifts/declined", Shape::Caregiver),
    ("shifts/yours", Shape::Caregiver),
    ("shifts/which", Shape::Choice),
    ("shifts/cancelled", Shape::Caregiver),
    ("alerts/shift_filled", Shape::Alert),
    ("alerts/shift_unfilled", Shape::Unfilled),
];

/// A shift as templates see it (`shift.*`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShiftView {
    pub id: i64,
    pub code: u32,
    /// Whether the text must carry the code ("reply YES 14").
    pub show_code: bool,
    /// "Tue Dec 1, 8:00 AM-12:00 PM" or "mar 1 dic, 8:00-12:00".
    pub when: String,
    /// "Tue Dec 1, 8:00 AM" or "mar 1 dic, 8:00".
    pub starts: String,
    #[serde(rename = "where")]
    pub location: String,
    pub client: String,
    pub notes: String,
    pub branch: String,
}

/// A caregiver as shift templates see one.
#[derive(Debug, Clone, Serialize)]
struct Who<'a> {
    first_name: &'a str,
    last_name: &'a str,
    external_id: &'a str,
}

/// How an offer went, for the "nobody took it" alert.
#[derive(Debug, Clone, Copy, Serialize)]
struct Tally {
    offered: usize,
    declined: usize,
}

#[derive(Debug, Clone, Serialize)]
struct ShiftMessage<'a> {
    agency: &'a Agency,
    shift: &'a ShiftView,
    #[serde(skip_serializing_if = "Option::is_none")]
    caregiver: Option<Who<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offers: Option<&'a [ShiftView]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tally: Option<Tally>,
}

const EN_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const EN_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
// Without accents outside GSM-7 ("sáb" would turn the whole text into UCS-2 and double its cost).
const ES_DAYS: [&str; 7] = ["lun", "mar", "mié", "jue", "vie", "sab", "dom"];
const ES_MONTHS: [&str; 12] = [
    "ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic",
];

fn day(lang: Lang, t: &DateTime<Tz>) -> String {
    let wd = t.weekday().num_days_from_monday() as usize;
    let m = t.month0() as usize;
    match lang {
        Lang::En => format!("{} {} {}", EN_DAYS[wd], EN_MONTHS[m], t.day()),
        Lang::Es => format!("{} {} {}", ES_DAYS[wd], t.day(), ES_MONTHS[m]),
    }
}

fn clock_time(lang: Lang, t: &DateTime<Tz>) -> String {
    match lang {
        Lang::En => {
            let (pm, h) = t.hour12();
            format!("{h}:{:02} {}", t.minute(), if pm { "PM" } else { "AM" })
        }
        Lang::Es => format!("{}:{:02}", t.hour(), t.minute()),
    }
}

/// The shift's start and span in its branch's zone, in the reader's language; with the zone's
/// abbreviation when the reader lives in another zone.
pub fn describe(offer: &ShiftOffer, lang: Lang, reader_tz: &str) -> (String, String) {
    let tz = quiet_hours::zone(&offer.timezone);
    let start = offer.starts_at.with_timezone(&tz);
    let end = offer.ends_at.with_timezone(&tz);
    let zone = if reader_tz == offer.timezone || reader_tz.is_empty() {
        String::new()
    } else {
        format!(" ({})", start.format("%Z"))
    };
    let starts = format!("{}, {}", day(lang, &start), clock_time(lang, &start));
    let until = if end.date_naive() == start.date_naive() {
        clock_time(lang, &end)
    } else {
        // An overnight shift names the day it ends.
        let wd = end.weekday().num_days_from_monday() as usize;
        let name = match lang {
            Lang::En => EN_DAYS[wd],
            Lang::Es => ES_DAYS[wd],
        };
        format!("{name} {}", clock_time(lang, &end))
    };
    (format!("{starts}-{until}{zone}"), format!("{starts}{zone}"))
}

pub fn view(offer: &ShiftOffer, lang: Lang, reader_tz: &str, show_code: bool) -> ShiftView {
    let (when, starts) = describe(offer, lang, reader_tz);
    ShiftView {
        id: offer.id,
        code: offer.code,
        show_code,
        when,
        starts,
        location: offer.location.clone(),
        client: offer.client_ref.clone(),
        notes: offer.notes.clone(),
        branch: offer.branch.clone(),
    }
}

fn who(c: &Caregiver) -> Who<'_> {
    Who {
        first_name: &c.first_name,
        last_name: &c.last_name,
        external_id: &c.external_id,
    }
}

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
// Reading a reply

/// A caregiver's answer to an offer: YES or NO, with the offer's code when they gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShiftReply {
    pub answer: ShiftAnswer,
    pub code: Option<u32>,
}

const YES_WORDS: &[&str] = &["yes", "y", "yeah", "yep", "si", "claro", "acepto"];
const NO_WORDS: &[&str] = &["no", "n", "nope", "pass", "paso"];
/// Words that may surround a YES or NO without changing it ("yes please", "no gracias").
const FILLER: &[&str] = &[
    "please", "pls", "thanks", "thank", "you", "por", "favor", "gracias",
];

/// Reads YES, NO, "YES 12", "12 yes", "yes12", "Sí, por favor", "no gracias". Anything else
/// is not a shift answer (and goes on to the flow the caregiver is in, if any).
pub fn parse_reply(message: &str) -> Option<ShiftReply> {
    let mut words: Vec<String> = text::words(message)
        .into_iter()
        .filter(|w| !FILLER.contains(&w.as_str()))
        .collect();
    // "YES12" is "YES 12".
    if let [w] = words.as_slice()
        && let Some(at) = w.find(|c: char| c.is_ascii_digit())
        && at > 0
        && w[at..].chars().all(|c| c.is_ascii_digit())
    {
        let (word, code) = w.split_at(at);
        words = vec![word.to_owned(), code.to_owned()];
    }
    let answer = |w: &str| {
        if YES_WORDS.contains(&w) {
            Some(ShiftAnswer::Yes)
        } else if NO_WORDS.contains(&w) {
            Some(ShiftAnswer::No)
        } else {
            None
        }
    };
    let code = |w: &str| {
        (w.len() <= 4 && w.chars().all(|c| c.is_ascii_digit()))
            .then(|| w.parse().ok())
            .flatten()
    };
    match words.as_slice() {
        [w] => answer(w).map(|answer| ShiftReply { answer, code: None }),
        [a, b] => match (answer(a), code(b), code(a), answer(b)) {
            (Some(answer), Some(code), _, _) | (_, _, Some(code), Some(answer)) => {
                Some(ShiftReply {
                    answer,
                    code: Some(code),
                })
            }
            _ => None,
        },
        _ => None,
    }
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

/// What `carebot shifts offer` asks for, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct OfferArgs {
    /// The agency's reference for the client (shown to the caregiver who takes the shift).
    #[arg(long = "client")]
    pub client_ref: String,
    /// When the shift starts, in the branch's time zone: "2026-12-01 08:00".
    #[arg(long)]
    pub start: String,
    /// When it ends: "2026-12-01 12:00", or just "12:00" (the next day if before the start).
    #[arg(long)]
    pub end: String,
    /// Where the shift is, as caregivers should read it: "Evanston, IL".
    #[arg(long = "where")]
    pub location: String,
    /// all, group:NAME, branch:NAME or phone:+1…[,+1…]
    #[arg(long)]
    pub to: String,
    /// A short note for caregivers (kept out of texts if empty).
    #[arg(long, default_value = "")]
    pub notes: String,
    /// Deadline for a YES: a time in the branch's zone ("2026-11-30 20:00") or a delay from
    /// now ("2h"). Never later than the start of the shift, which is also the default.
    #[arg(long)]
    pub expires: Option<String>,
    /// The branch whose time zone the times are in (default: the audience's branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// The supervisor told who took the shift (default: the branch's first supervisor).
    #[arg(long)]
    pub supervisor: Option<String>,
    /// Caregivers per wave, best ranked first (fewest shifts won this week); 0 sends to all.
    #[arg(long, default_value_t = 0)]
    pub wave_size: u32,
    /// Minutes between waves while nobody has taken the shift.
    #[arg(long, default_value_t = 30)]
    pub wave_minutes: u32,
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

/// Parses "2026-12-01 08:00" (or with a `T`).
fn local_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
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
    ) -> Result<String, String> {
        self.catalog
            .templates
            .render(name, lang, msg)
            .map(|(text, _)| text)
            .map_err(|e| e.to_string())
    }

    /// A message to the caregiver who wrote, about `held`.
    fn shift_reply(
        &self,
        snap: &Snapshot,
        caregiver: &Caregiver,
        name: &str,
        held: &HeldShift,
        now: DateTime<Utc>,
    ) -> Result<NewOutbound, String> {
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
    ) -> Result<Option<NewOutbound>, String> {
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
    pub(crate) fn decide_shift_reply(
        &self,
        snap: &Snapshot,
        inbound: &Inbound,
        caregiver: &Caregiver,
    ) -> Result<Option<Plan>, String> {
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
    fn decide_shift(
        &self,
        snap: &ShiftSnapshot,
        now: DateTime<Utc>,
        report: &Mutex<WaveReport>,
    ) -> Result<ShiftPlan, String> {
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
    pub async fn offer_shift(
        &self,
        args: &OfferArgs,
        now: DateTime<Utc>,
    ) -> Result<OfferReport, ShiftError> {
        let nonempty = |s: &str, what: &str| {
            let s = s.trim();
            if s.is_empty() {
                Err(invalid(format!("{what} must not be empty")))
            } else {
                Ok(s.to_owned())
            }
        };
        let client_ref = nonempty(&args.client_ref, "--client")?;
        let location = nonempty(&args.location, "--where")?;
        let audience = crate::model::Audience::parse(&args.to).map_err(invalid)?;
        let people = self.store.audience(&audience).await?;

        // The branch, and its time zone.
        let branch = match (&args.branch, &audience) {
            (Some(b), _) => b.trim().to_owned(),
            (None, crate::model::Audience::Branch(b)) => b.clone(),
            (None, _) => {
                let mut branches: Vec<&str> = people.iter().map(|c| c.branch.as_str()).collect();
                branches.sort_unstable();
                branches.dedup();
                match branches.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => return Err(invalid(format!("nobody active is in {:?}", args.to))),
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
        let start_local = local_datetime(&args.start).ok_or_else(|| {
            invalid(format!(
                "--start {:?} must look like \"2026-12-01 08:00\"",
                args.start
            ))
        })?;
        let end_local = match local_datetime(&args.end) {
            Some(t) => t,
            None => {
                let time = NaiveTime::parse_from_str(args.end.trim(), "%H:%M").map_err(|_| {
                    invalid(format!(
                        "--end {:?} must look like \"2026-12-01 12:00\" or \"12:00\"",
                        args.end
                    ))
                })?;
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
                args.start
            )));
        }
        let expires_at = match &args.expires {
            None => starts_at,
            Some(e) => {
                let at = match local_datetime(e) {
                    Some(local) => instant(tz, local, "--expires")?,
                    None => {
                        let d = crate::flow::definition::parse_duration(e).map_err(|_| {
                            invalid(format!(
                                "--expires {e:?} must be a time (\"2026-11-30 20:00\") or a \
                                 delay (\"2h\")"
                            ))
                        })?;
                        now + Duration::from_std(d).map_err(|_| invalid("--expires is too far"))?
                    }
                };
                if at <= now {
                    return Err(invalid(format!("--expires {e} has already passed")));
                }
                at.min(starts_at)
            }
        };
        let supervisor = match &args.supervisor {
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
                client_ref,
                location,
                notes: args.notes.trim().to_owned(),
                branch,
                timezone,
                starts_at,
                ends_at,
                expires_at,
                audience: args.to.trim().to_owned(),
                supervisor,
                wave_size: args.wave_size,
                wave_minutes: args.wave_minutes.max(1),
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

// ---------------------------------------------------------------------------------------------
// `flows check`

/// Requires every shift template in English, renders each in every language it exists in
/// against a sample shift, and records its encoding and segments like every other message.
pub fn check_templates(templates: &Templates, report: &mut Report) {
    let agency = sample_agency();
    let sample = sample_offer();
    for (name, shape) in SHIFT_TEMPLATES {
        if !templates.has(name, Lang::En) {
            report.problems.push(Problem {
                file: templates.path(name, Lang::En).display().to_string(),
                line: 1,
                column: 1,
                severity: Severity::Error,
                message: format!("required template {name:?} is missing"),
            });
            continue;
        }
        let to_supervisor = matches!(shape, Shape::Alert | Shape::Unfilled);
        for lang in Lang::ALL {
            if !templates.has(name, lang) {
                // Supervisors read alerts in English; caregivers get their own language.
                if !to_supervisor {
                    report.problems.push(Problem {
                        file: templates.path(name, lang).display().to_string(),
                        line: 1,
                        column: 1,
                        severity: Severity::Warning,
                        message: format!("no {lang} translation of {name:?}; English will be sent"),
                    });
                }
                continue;
            }
            let person = crate::catalog::sample_person(lang);
            let shift = view(&sample, lang, "America/Chicago", *shape == Shape::Caregiver);
            let mut second = sample.clone();
            second.id += 1;
            second.code += 2;
            second.starts_at += Duration::days(1);
            second.ends_at += Duration::days(1);
            let offers = [shift.clone(), view(&second, lang, "America/Chicago", true)];
            let msg = ShiftMessage {
                agency: &agency,
                shift: &shift,
                caregiver: (*shape != Shape::Unfilled).then_some(Who {
                    first_name: &person.first_name,
                    last_name: "Gonzalez",
                    external_id: "C-1042",
                }),
                offers: (*shape == Shape::Choice).then_some(&offers[..]),
                tally: (*shape == Shape::Unfilled).then_some(Tally {
                    offered: 12,
                    declined: 3,
                }),
            };
            match templates.render(name, lang, &msg) {
                Ok((text, _)) => stats(report, "shifts", name, lang, templates, &text),
                Err(e) => report.problems.push(Problem {
                    file: templates.path(name, lang).display().to_string(),
                    line: Templates::error_line(&e),
                    column: 1,
                    severity: Severity::Error,
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// The shift every shift template is checked against: a morning with notes, the longest
/// ordinary case.
fn sample_offer() -> ShiftOffer {
    let tz = chrono_tz::America::Chicago;
    let at = |h| {
        tz.with_ymd_and_hms(2026, 12, 1, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    };
    ShiftOffer {
        id: 41,
        code: 12,
        client_ref: "CL-2291".into(),
        location: "Evanston, IL".into(),
        notes: "Hoyer lift".into(),
        branch: "Chicago North".into(),
        timezone: "America/Chicago".into(),
        starts_at: at(8),
        ends_at: at(12),
        expires_at: at(8),
        audience: "branch:Chicago North".into(),
        supervisor: None,
        wave_size: 0,
        wave_minutes: 30,
        waves_sent: 1,
        next_wave_at: None,
        status: ShiftStatus::Open,
        filled_by_id: None,
        filled_by: None,
        filled_at: None,
        closed_at: None,
        created_at: at(6),
    }
}

// ---------------------------------------------------------------------------------------------
// `carebot shifts`

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ShiftsCommand {
    /// Text an open shift to eligible caregivers; the first YES gets it. Prints the offer's id
    /// alone on its last line.
    Offer(OfferArgs),
    /// Every offer: id, status (open, filled, expired, cancelled), who took it and when.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        /// Only offers with this status.
        #[arg(long)]
        status: Option<ShiftStatus>,
    },
    /// Cancel an open or filled offer (a caregiver who took it is told).
    Cancel { id: i64 },
}

impl clap::ValueEnum for ShiftStatus {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            ShiftStatus::Open,
            ShiftStatus::Filled,
            ShiftStatus::Expired,
            ShiftStatus::Cancelled,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// `shifts list --json`: the contract's fields first.
#[derive(Debug, Serialize)]
pub struct ListedShift<'a> {
    pub id: i64,
    pub status: ShiftStatus,
    pub filled_by: Option<&'a str>,
    pub filled_at: Option<DateTime<Utc>>,
    pub client: &'a str,
    #[serde(rename = "where")]
    pub location: &'a str,
    pub notes: &'a str,
    pub branch: &'a str,
    pub timezone: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub code: u32,
    pub audience: &'a str,
    pub supervisor: Option<&'a str>,
    pub sent: u32,
    pub yes: u32,
    pub no: u32,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a ShiftListing> for ListedShift<'a> {
    fn from(l: &'a ShiftListing) -> Self {
        let o = &l.offer;
        ListedShift {
            id: o.id,
            status: o.status,
            filled_by: o.filled_by.as_deref(),
            filled_at: o.filled_at,
            client: &o.client_ref,
            location: &o.location,
            notes: &o.notes,
            branch: &o.branch,
            timezone: &o.timezone,
            starts_at: o.starts_at,
            ends_at: o.ends_at,
            expires_at: o.expires_at,
            code: o.code,
            audience: &o.audience,
            supervisor: o.supervisor.as_ref().map(|s| s.external_id.as_str()),
            sent: l.sent,
            yes: l.yes,
            no: l.no,
            created_at: o.created_at,
            closed_at: o.closed_at,
        }
    }
}

/// What `shifts offer` prints: what was created and who was texted, then the id alone.
pub fn describe_offer(r: &OfferReport) -> String {
    let o = &r.offer;
    let tz = quiet_hours::zone(&o.timezone);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "offer {} (code {}) for client {}: {} to {} {} ({}), {}; YES accepted until {}",
        o.id,
        o.code,
        o.client_ref,
        local(o.starts_at),
        local(o.ends_at),
        o.timezone,
        o.branch,
        o.location,
        local(o.expires_at),
    );
    let skipped: usize = r.wave.skipped.values().sum();
    let reasons: Vec<String> = r
        .wave
        .skipped
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        out,
        "wave 1: texted {}, kept for later waves {}, skipped {skipped}{}",
        r.wave.sent,
        r.wave.later,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    match &o.supervisor {
        Some(s) => {
            let _ = writeln!(
                out,
                "supervisor told of the outcome: {} ({})",
                s.name, s.external_id
            );
        }
        None => {
            let _ = writeln!(
                out,
                "warning: branch {:?} has no supervisor on the roster; nobody will be told the outcome",
                o.branch
            );
        }
    }
    let _ = write!(out, "{}", o.id);
    out
}

/// A table for people.
pub fn describe_list(listings: &[ShiftListing]) -> String {
    let mut out = format!(
        "{:>5} {:<9} {:>4} {:<16} {:<12} {:<20} {:<12} {:<20} {:>4} {:>3} {:>3}\n",
        "id",
        "status",
        "code",
        "starts (local)",
        "client",
        "where",
        "filled_by",
        "filled_at",
        "sent",
        "yes",
        "no"
    );
    for l in listings {
        let o = &l.offer;
        let tz = quiet_hours::zone(&o.timezone);
        let _ = writeln!(
            out,
            "{:>5} {:<9} {:>4} {:<16} {:<12} {:<20} {:<12} {:<20} {:>4} {:>3} {:>3}",
            o.id,
            o.status.as_str(),
            o.code,
            o.starts_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            o.client_ref,
            o.location,
            o.filled_by.as_deref().unwrap_or("-"),
            o.filled_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into()),
            l.sent,
            l.yes,
            l.no
        );
    }
    out
}

/// Counts by status, for a line under the table.
pub fn summary(listings: &[ShiftListing]) -> String {
    let mut by: HashMap<ShiftStatus, usize> = HashMap::new();
    for l in listings {
        *by.entry(l.offer.status).or_default() += 1;
    }
    [
        ShiftStatus::Open,
        ShiftStatus::Filled,
        ShiftStatus::Expired,
        ShiftStatus::Cancelled,
    ]
    .iter()
    .map(|s| format!("{} {}", by.get(s).copied().unwrap_or(0), s.as_str()))
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Option<(ShiftAnswer, Option<u32>)> {
        parse_reply(text).map(|r| (r.answer, r.code))
    }

    #[test]
    fn yes_and_no_with_or_without_a_code() {
        assert_eq!(reply("YES"), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply(" yes! "), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply("Sí"), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply("si por favor"), Some((ShiftAnswer::Yes, None)));
        assert_eq!(reply("YES 12"), Some((ShiftAnswer::Yes, Some(12))));
        assert_eq!(reply("yes12"), Some((ShiftAnswer::Yes, Some(12))));
        assert_eq!(reply("12 yes"), Some((ShiftAnswer::Yes, Some(12))));
        assert_eq!(reply("Yes, #14"), Some((ShiftAnswer::Yes, Some(14))));
        assert_eq!(reply("no"), Some((ShiftAnswer::No, None)));
        assert_eq!(reply("No gracias"), Some((ShiftAnswer::No, None)));
        assert_eq!(reply("NO 14"), Some((ShiftAnswer::No, Some(14))));
    }

    #[test]
    fn anything_longer_is_left_to_the_flows() {
        for text in [
            "12",
            "yes I quit",
            "no, I feel unsafe",
            "maybe",
            "",
            "yes 12 14",
        ] {
            assert_eq!(reply(text), None, "{text:?}");
        }
    }

    fn offer_at(start: &str, end: &str) -> ShiftOffer {
        let mut o = sample_offer();
        let tz = chrono_tz::America::Chicago;
        let t = |s: &str| instant(tz, local_datetime(s).unwrap(), "t").unwrap();
        o.starts_at = t(start);
        o.ends_at = t(end);
        o
    }

    #[test]
    fn times_read_in_the_branch_zone_and_language() {
        let o = offer_at("2026-12-01 08:00", "2026-12-01 12:30");
        assert_eq!(
            describe(&o, Lang::En, "America/Chicago"),
            (
                "Tue Dec 1, 8:00 AM-12:30 PM".to_owned(),
                "Tue Dec 1, 8:00 AM".to_owned()
            )
        );
        assert_eq!(
            describe(&o, Lang::Es, "America/Chicago").0,
            "mar 1 dic, 8:00-12:30"
        );
        // A caregiver in another zone is told which zone the times are in.
        assert_eq!(
            describe(&o, Lang::En, "America/New_York").0,
            "Tue Dec 1, 8:00 AM-12:30 PM (CST)"
        );
        let night = offer_at("2026-12-01 22:00", "2026-12-02 06:00");
        assert_eq!(
            describe(&night, Lang::En, "America/Chicago").0,
            "Tue Dec 1, 10:00 PM-Wed 6:00 AM"
        );
    }

    #[test]
    fn a_local_time_in_the_spring_gap_is_refused() {
        let tz = chrono_tz::America::Chicago;
        let gap = local_datetime("2026-03-08 02:30").unwrap();
        assert!(instant(tz, gap, "--start").is_err());
        let overlap = local_datetime("2026-11-01 01:30").unwrap();
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
