//! Placeholder: the SQLite store lands from the `store` branch.
#[derive(Clone)]
pub struct SqliteStore;
impl SqliteStore {
    pub async fn connect(_url: &str) -> super::Result<Self> {
        unimplemented!()
    }
}
