// Re-export from wacore — the canonical implementation lives there now.
pub use wacore::session::SESSION_CHECK_BATCH_SIZE;
