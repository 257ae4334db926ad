//! Placeholder: the PostgreSQL store lands from the `store` branch.
#[derive(Clone)]
pub struct PgStore;
impl PgStore {
    pub async fn connect(_url: &str) -> super::Result<Self> {
        unimplemented!()
    }
}
