//! Config calls: `PATCH /v1/configs/{topic|broker}/{name}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of a config change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// Names to set, with their values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Names to delete (back to the default).
    #[serde(default)]
    pub delete: Vec<String>,
}

impl ConfigPatch {
    /// Sets one key.
    pub fn set_one(key: impl Into<String>, value: impl Into<String>) -> Self {
        ConfigPatch {
            set: BTreeMap::from([(key.into(), value.into())]),
            delete: Vec::new(),
        }
    }
}
