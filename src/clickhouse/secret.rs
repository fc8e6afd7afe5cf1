//! A string that must never be printed: passwords and keys.
//!
//! Guarantee: `Debug` and `Display` print `***` whatever the value, so a `Secret` inside a
//! settings struct that is logged with `{:?}` does not leak. The only way to read the value is
//! [`Secret::expose`], which makes every read site greppable.
//!
//! This type will move to a crate-wide module once configuration needs it too; it lives here
//! for now because the ClickHouse client is its first user.

use std::fmt;

/// A secret string (password, token). Prints as `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Call sites should only pass it to the wire, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string (e.g. a user without a password).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacted_inside_derived_debug() {
        #[derive(Debug)]
        #[allow(dead_code)] // only Debug reads the fields
        struct Holder {
            password: Secret,
        }
        let h = Holder {
            password: Secret::from("pa55"),
        };
        assert!(!format!("{h:?}").contains("pa55"));
    }
}
