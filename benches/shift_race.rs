//! The shift-offer race as a benchmark: 200 caregivers say YES to one offer at the same moment,
//! each a signed Twilio webhook over real HTTP to the real server; the figure is the time from
//! releasing them until the last webhook answered, when every one of the 200 has its answer
//! ("it's yours" or "already filled") committed and queued. Targets: 1 s on SQLite, 500 ms on
//! PostgreSQL. Run with `cargo bench --bench shift_race`; PostgreSQL is measured when
//! `CAREBOT_TEST_POSTGRES_URL` is set (a fresh database is created and dropped).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::TestStore;
use support::app::spawn_app;
use support::shift_race::{RACERS, client, race, roster};

const WARM_UP: u32 = 3;
const ROUNDS: u32 = 30;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        run("SQLite", support::sqlite().await, Duration::from_secs(1)).await;
        match support::postgres().await {
            Some(db) => run("PostgreSQL", db, Duration::from_millis(500)).await,
            None => println!("PostgreSQL: not measured (set CAREBOT_TEST_POSTGRES_URL)"),
        }
    });
}

async fn run(name: &str, db: TestStore, target: Duration) {
    let app = spawn_app(db).await;
    roster(&app, RACERS).await;
    let client = client();
    let mut times = Vec::new();
    for round in 0..WARM_UP + ROUNDS {
        let r = race(&app, &client, round).await;
        assert_eq!(r.offered, RACERS as usize);
        assert!(r.statuses.iter().all(|s| *s == 200), "{:?}", r.statuses);
        if round >= WARM_UP {
            times.push(r.elapsed);
        }
    }
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let p90 = times[times.len() * 9 / 10];
    println!(
        "{name}: {RACERS} simultaneous YES, all answers queued: median {:.0} ms, p90 {:.0} ms, \
         min {:.0} ms, max {:.0} ms over {ROUNDS} offers (target {:.0} ms: {})",
        ms(median),
        ms(p90),
        ms(times[0]),
        ms(times[times.len() - 1]),
        ms(target),
        if median <= target { "met" } else { "MISSED" },
    );
    app.stop().await;
}
