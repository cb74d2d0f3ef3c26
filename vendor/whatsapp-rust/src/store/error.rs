// Re-export error types from wacore for compatibility
pub use wacore::store::error::{Result, StoreError};
