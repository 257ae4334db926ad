//! The shift-offer race, shared by `tests/shift_offers.rs` and `benches/shift_race.rs`: a roster
//! of caregivers, an offer texted to all of them, and their YES fired at once as signed
//! webhooks over real HTTP.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use carebot::cli::shifts::OfferArgs;
use carebot::model::CaregiverRecord;
use carebot::store::Store;
use chrono::NaiveDate;

use super::app::{TestApp, sms_params};
use super::fake_twilio;

/// How many caregivers say YES at the same moment.
pub const RACERS: u32 = 200;
/// The supervisor told who took each shift.
pub const DANA: &str = "+13125550142";
/// The first caregivers' names (the rest are "Cg6", "Cg7", …).
pub const NAMES: [&str; 5] = ["Ana", "Maria", "Rosa", "Lucia", "Carmen"];

pub fn phone(i: u32) -> String {
    format!("+1312555{:04}", 1000 + i)
}

/// Dana (supervisor, Chicago North) and `n` caregivers with consent, in group "float".
pub async fn roster(app: &TestApp, n: u32) {
    let sups = format!(
        "external_id,name,phone,email,branch,timezone\n\
         S1,Dana Smith,{DANA},dana@example.org,Chicago North,America/Chicago\n"
    );
    carebot::roster::import_supervisors(app.store(), sups.as_bytes())
        .await
        .unwrap();
    let people: Vec<CaregiverRecord> = (1..=n)
        .map(|i| CaregiverRecord {
            external_id: format!("C{i}"),
            first_name: NAMES
                .get(i as usize - 1)
                .map_or(format!("Cg{i}"), |s| s.to_string()),
            last_name: "Lopez".into(),
            phone: phone(i),
            language: carebot::domain::Lang::En,
            timezone: "America/Chicago".into(),
            branch: "Chicago North".into(),
            supervisor_id: Some("S1".into()),
            groups: vec!["float".into()],
            consent_at: Some(NaiveDate::from_ymd_opt(2026, 1, 15).unwrap()),
        })
        .collect();
    app.store().upsert_caregivers(&people).await.unwrap();
}

/// A four-hour morning shift `day` days after 2031-01-01, to group "float".
pub fn offer_args(day: u32, expires: Option<&str>) -> OfferArgs {
    let date = NaiveDate::from_ymd_opt(2031, 1, 1).unwrap() + chrono::Duration::days(day.into());
    OfferArgs {
        client_ref: "CL-2291".into(),
        start: format!("{date} 08:00"),
        end: "12:00".into(),
        location: "Evanston, IL".into(),
        to: "group:float".into(),
        expires: expires.map(str::to_owned),
        wave_minutes: 30,
        ..Default::default()
    }
}

/// An HTTP client that keeps a connection per racer between rounds.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(RACERS as usize)
        .build()
        .unwrap()
}

/// Posts one signed inbound SMS; returns the HTTP status (0 when the request failed).
pub async fn post(
    client: &reqwest::Client,
    app_url: &str,
    from: &str,
    body: &str,
    sid: &str,
) -> u16 {
    let url = format!("{app_url}/webhooks/twilio/sms");
    let params = sms_params(from, body, sid);
    let sig = carebot::channel::twilio::signature::sign(fake_twilio::AUTH_TOKEN, &url, &params);
    client
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// One round of the race.
pub struct Round {
    pub offer_id: i64,
    /// How many caregivers the offer was texted to.
    pub offered: usize,
    /// Each racer's HTTP status, in caregiver order.
    pub statuses: Vec<u16>,
    /// From the moment the racers were released until the last webhook answered, which is when
    /// every answer is committed and queued (a 200 means exactly that).
    pub elapsed: Duration,
}

/// Offers shift `round` to everyone (as `carebot shifts offer` does), then releases all
/// [`RACERS`] YES at once, each a signed webhook.
pub async fn race(app: &TestApp, client: &reqwest::Client, round: u32) -> Round {
    let report = app
        .runner
        .offer_shift(
            &offer_args(round, None).request().unwrap(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Barrier::new(RACERS as usize + 1));
    let racers: Vec<_> = (1..=RACERS)
        .map(|i| {
            let (client, url, gate) = (client.clone(), app.url.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                post(&client, &url, &phone(i), "YES", &format!("SM-{round}-{i}")).await
            })
        })
        .collect();
    gate.wait().await;
    let started = Instant::now();
    let mut statuses = Vec::with_capacity(racers.len());
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    Round {
        offer_id: report.offer.id,
        offered: report.wave.sent,
        statuses,
        elapsed: started.elapsed(),
    }
}
