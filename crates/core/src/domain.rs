//! Closed sets of values that are stored and shown as text (hook scopes and states, task states), each
//! declared once with its text by [`named_enum!`](crate::named_enum): reading an unknown text is an error,
//! never a silent default.

use serde::{Deserialize, Serialize};

/// A stored or received text that names no value of the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {found:?}")]
pub struct UnknownName {
    pub what: &'static str,
    /// The text, cut to 64 characters.
    pub found: String,
}

/// Declares a fieldless enum whose values are written as the given texts, with `ALL`, `as_str`, a
/// strict `parse`, `Display` and serde in the same texts.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Result<Self, $crate::domain::UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::UnknownName {
                        what: $what,
                        found: text.chars().take(64).collect(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Where a webhook lives: on the linked group (GitLab Premium) or on each of its projects. A
    /// subscription's `hook_mode` is the scope its hooks were registered with.
    pub enum HookScope ("hook scope") {
        Group = "group",
        Project = "project",
    }
}

named_enum! {
    /// A registered hook as the last hook check found it.
    pub enum HookState ("hook state") {
        Ok = "ok",
        /// GitLab disabled it after failed deliveries.
        Disabled = "disabled",
        /// It is gone from GitLab.
        Missing = "missing",
    }
}

/// How a link asks for its webhooks to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookMode {
    /// A group hook when GitLab allows it (Premium, Owner), else one hook per project.
    Auto,
    /// One group hook (GitLab Premium; the user must be Owner).
    Group,
    /// One hook per project of the group and its subgroups (any tier; Maintainer).
    Project,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for scope in HookScope::ALL {
            assert_eq!(HookScope::parse(scope.as_str()), Ok(*scope));
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::json!(scope.as_str())
            );
        }
        for state in HookState::ALL {
            assert_eq!(HookState::parse(&state.to_string()), Ok(*state));
        }
        assert_eq!(HookScope::Group.as_str(), "group");
        assert_eq!(HookState::Disabled.as_str(), "disabled");
        let unknown = HookScope::parse("Group").unwrap_err();
        assert_eq!(unknown.to_string(), "unknown hook scope \"Group\"");
        assert!(serde_json::from_str::<HookScope>("\"instance\"").is_err());
        assert_eq!(
            HookState::parse(&"x".repeat(500)).unwrap_err().found.len(),
            64
        );
    }
}

/// Ids that travel side by side (a subscription's project, a project's merge request): each its own
/// type, so that two cannot be swapped in a call without the compiler noticing.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A subscription (a linked group) of this service.
    SubscriptionId
);
id_type!(
    /// A GitLab project, by its global id.
    ProjectId
);
id_type!(
    /// A GitLab merge request, by its global id (not its iid).
    MergeRequestId
);
