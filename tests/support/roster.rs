//! The roster the end-to-end suites start from, imported as an operator imports it: CSV text
//! through `carebot::roster`, so a suite begins with what `carebot import` would have stored.
//! Everyone works in Chicago time.

#![allow(dead_code)]

use carebot::roster::ImportSummary;
use carebot::store::AnyStore;

/// Imports supervisors given as `(external_id, name, phone, branch)`; each one's email is
/// `first.last@example.org`.
pub async fn import_supervisors(
    store: &AnyStore,
    rows: &[(&str, &str, &str, &str)],
) -> ImportSummary {
    let mut csv = String::from("external_id,name,phone,email,branch,timezone\n");
    for (id, name, phone, branch) in rows {
        let email = format!("{}@example.org", name.to_lowercase().replace(' ', "."));
        csv.push_str(&format!(
            "{id},{name},{phone},{email},{branch},America/Chicago\n"
        ));
    }
    carebot::roster::import_supervisors(store, csv.as_bytes())
        .await
        .unwrap()
}

/// Imports caregivers given as `(external_id, first_name, last_name, phone)`: English speakers
/// in Chicago North under supervisor S1, in group "pulse", with written consent on file.
pub async fn import_caregivers(
    store: &AnyStore,
    rows: &[(&str, &str, &str, &str)],
) -> ImportSummary {
    let rows: Vec<_> = rows
        .iter()
        .map(|&(id, first, last, phone)| (id, first, last, phone, "Chicago North", "S1"))
        .collect();
    import_caregivers_in(store, &rows).await
}

/// [`import_caregivers`] with each caregiver's branch and supervisor given:
/// `(external_id, first_name, last_name, phone, branch, supervisor_id)`.
pub async fn import_caregivers_in(
    store: &AnyStore,
    rows: &[(&str, &str, &str, &str, &str, &str)],
) -> ImportSummary {
    let mut csv = String::from(
        "external_id,first_name,last_name,phone,language,timezone,branch,supervisor_id,groups,consent_at\n",
    );
    for (id, first, last, phone, branch, supervisor) in rows {
        csv.push_str(&format!(
            "{id},{first},{last},{phone},en,America/Chicago,{branch},{supervisor},pulse,2026-01-15\n"
        ));
    }
    carebot::roster::import_caregivers(store, csv.as_bytes(), false)
        .await
        .unwrap()
}
