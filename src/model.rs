//! The policy file: plain serde data, no logic.
//!
//! A [`Policy`] is what a policy file says, read as written: names are not
//! validated and references are not resolved here. [`Policy::compile`] does
//! all of that and reports every problem at once.
//!
//! Policies are read from JSON ([`Policy::from_json`]), TOML (feature `toml`,
//! [`Policy::from_toml`]), a file ([`Policy::from_path`]), or built in code
//! with the `&mut self` setters (or, for large policies, [`PolicyBuilder`],
//! whose setters are O(1) where these are linear):
//!
//! ```
//! use rolegraph::Policy;
//!
//! let mut policy = Policy::new();
//! policy.permission("projects:read").permission("projects:update");
//! policy.role("viewer").grant("projects:read");
//! policy.role("editor").extends("viewer").grant("projects:update");
//! policy.set_default_member_role("viewer");
//! policy.organization("org_1").role("manager").extends("editor").grant("projects:*");
//!
//! let snapshot = policy.compile()?;
//! assert_eq!(snapshot.roles_len(), 3);
//! # Ok::<(), rolegraph::CompileError>(())
//! ```

mod builder;
mod error;

use std::fmt;
use std::path::Path;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use builder::{OrganizationBuilder, PolicyBuilder, RoleBuilder};
pub use error::LoadError;

/// A whole policy: permissions, environment roles, defaults and organizations.
///
/// Field names and meaning follow the policy file of [`semantics`](crate::semantics), which follows
/// Scalekit's roles & permissions. Unknown fields are rejected when parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Policy {
    /// Every permission a role may grant or a request may check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// Environment roles: defined once for the whole application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// The role a user gets in an organization they create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_creator_role: Option<String>,
    /// The role a member gets when nothing else assigns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_member_role: Option<String>,
    /// Organizations with their own roles, defaults and group mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<Organization>,
}

/// A named action, conventionally `resource:action`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Permission {
    /// The permission's name: 1–128 characters from `A–Z a–z 0–9 _ . : -`.
    pub name: String,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A role: direct grants plus the base roles it extends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Role {
    /// The role's name, unique in its scope.
    pub name: String,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Direct grants: permission names, or wildcards such as `projects:*` and `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Base roles; written as one name (Scalekit's shape) or a list.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many",
        serialize_with = "serialize_one_or_many"
    )]
    pub extends: Vec<String>,
}

/// An organization: its own roles, an optional default member role, and the
/// mapping from directory groups to roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Organization {
    /// The organization's id, as in a token's `oid` claim (`org_…`).
    pub id: String,
    /// Overrides the environment's default member role in this organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_member_role: Option<String>,
    /// Roles defined only in this organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Directory group → roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_roles: Vec<GroupRoles>,
}

/// The roles a directory group's members get in one organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct GroupRoles {
    /// The directory group, by id (`dirgroup_…`) or display name.
    pub group: String,
    /// The roles its members get.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Policy {
    /// An empty policy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a policy from JSON text.
    ///
    /// # Errors
    ///
    /// [`LoadError::Syntax`] when the text is not JSON of the policy's shape,
    /// naming the path of the offending field (unknown fields included).
    /// A leading UTF-8 byte order mark is skipped.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let text = without_bom(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let policy: Self =
            serde_path_to_error::deserialize(&mut de).map_err(|e| LoadError::from_json(None, e))?;
        de.end().map_err(|e| LoadError::from_json_plain(None, e))?;
        Ok(policy)
    }

    /// Parses a policy from TOML text (the same shape as the JSON file).
    ///
    /// # Errors
    ///
    /// [`LoadError::Syntax`] when the text is not TOML of the policy's shape,
    /// with the line and column. A leading UTF-8 byte order mark is skipped.
    #[cfg(feature = "toml")]
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        let text = without_bom(text);
        let de =
            toml::Deserializer::parse(text).map_err(|e| LoadError::from_toml(None, text, e))?;
        serde_path_to_error::deserialize(de).map_err(|e| LoadError::from_toml_path(None, text, e))
    }

    /// Reads a policy file: `.toml` files as TOML (feature `toml`), anything
    /// else as JSON.
    ///
    /// # Errors
    ///
    /// [`LoadError::Io`] when the file cannot be read, [`LoadError::Syntax`]
    /// when its content is not a policy, [`LoadError::UnsupportedFormat`] for a
    /// `.toml` file without the `toml` feature.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let is_toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let parsed = if is_toml {
            #[cfg(feature = "toml")]
            {
                Self::from_toml(&text)
            }
            #[cfg(not(feature = "toml"))]
            {
                return Err(LoadError::UnsupportedFormat {
                    path: path.to_path_buf(),
                });
            }
        } else {
            Self::from_json(&text)
        };
        parsed.map_err(|e| e.with_file(path))
    }

    /// Serializes the policy as pretty-printed JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing plain strings, vectors and options cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Declares a permission (once: declaring it again changes nothing).
    ///
    /// # Complexity
    ///
    /// Linear in the number of permissions: the existing entry is found by
    /// scanning a `Vec`, so declaring *n* of them this way takes O(*n*²).
    /// For large policies use [`PolicyBuilder`] ([`Policy::builder`]), whose
    /// lookups are hashed.
    pub fn permission(&mut self, name: impl Into<String>) -> &mut Self {
        let name = name.into();
        if !self.permissions.iter().any(|p| p.name == name) {
            self.permissions.push(Permission {
                name,
                description: None,
            });
        }
        self
    }

    /// The environment role `name`, created empty if it does not exist yet.
    ///
    /// # Complexity
    ///
    /// Linear in the number of environment roles: the existing entry is found by
    /// scanning a `Vec`, so declaring *n* of them this way takes O(*n*²).
    /// For large policies use [`PolicyBuilder`] ([`Policy::builder`]), whose
    /// lookups are hashed.
    pub fn role(&mut self, name: impl Into<String>) -> &mut Role {
        let name = name.into();
        entry(&mut self.roles, |r| r.name == name, || Role::named(&name))
    }

    /// The organization `id`, created empty if it does not exist yet.
    ///
    /// # Complexity
    ///
    /// Linear in the number of organizations: the existing entry is found by
    /// scanning a `Vec`, so declaring *n* of them this way takes O(*n*²).
    /// For large policies use [`PolicyBuilder`] ([`Policy::builder`]), whose
    /// lookups are hashed.
    pub fn organization(&mut self, id: impl Into<String>) -> &mut Organization {
        let id = id.into();
        entry(
            &mut self.organizations,
            |o| o.id == id,
            || Organization {
                id: id.clone(),
                ..Organization::default()
            },
        )
    }

    /// Sets the environment's default creator role.
    pub fn set_default_creator_role(&mut self, role: impl Into<String>) -> &mut Self {
        self.default_creator_role = Some(role.into());
        self
    }

    /// Sets the environment's default member role.
    pub fn set_default_member_role(&mut self, role: impl Into<String>) -> &mut Self {
        self.default_member_role = Some(role.into());
        self
    }

    /// Validates and compiles the policy into an immutable [`Snapshot`](crate::Snapshot).
    ///
    /// # Errors
    ///
    /// A [`CompileError`](crate::CompileError) listing every rule of DESIGN.md's
    /// "Validity" section the policy breaks.
    pub fn compile(&self) -> Result<crate::Snapshot, crate::CompileError> {
        crate::compile::compile(self).map(crate::Snapshot::from_core)
    }
}

/// The element `matches` selects, pushed by `make` when there is none.
#[expect(
    clippy::indexing_slicing,
    reason = "the index was just found or pushed"
)]
fn entry<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> &mut T {
    let at = match items.iter().position(matches) {
        Some(at) => at,
        None => {
            items.push(make());
            items.len() - 1
        }
    };
    &mut items[at]
}

impl Role {
    /// A role with this name and nothing else.
    #[must_use]
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a direct grant: a permission name or a wildcard such as `projects:*`.
    ///
    /// # Complexity
    ///
    /// Linear in the role's grants: a repeat is found by scanning them, so
    /// *n* grants cost O(*n*²) comparisons. The fields are public, so a `Role`
    /// cannot keep an index of them; [`RoleBuilder::grant`](crate::RoleBuilder::grant)
    /// (the roles of a [`PolicyBuilder`]) does the same in O(1) amortized.
    pub fn grant(&mut self, permission: impl Into<String>) -> &mut Self {
        let permission = permission.into();
        if !self.permissions.contains(&permission) {
            self.permissions.push(permission);
        }
        self
    }

    /// Adds a base role (once: a repeat changes nothing).
    ///
    /// # Complexity
    ///
    /// Linear in the role's bases, as [`Role::grant`];
    /// [`RoleBuilder::extends`](crate::RoleBuilder::extends) is O(1) amortized.
    pub fn extends(&mut self, base: impl Into<String>) -> &mut Self {
        let base = base.into();
        if !self.extends.contains(&base) {
            self.extends.push(base);
        }
        self
    }

    /// Sets the display name.
    pub fn display_name(&mut self, display_name: impl Into<String>) -> &mut Self {
        self.display_name = Some(display_name.into());
        self
    }

    /// Sets the description.
    pub fn description(&mut self, description: impl Into<String>) -> &mut Self {
        self.description = Some(description.into());
        self
    }
}

impl Organization {
    /// The organization role `name`, created empty if it does not exist yet.
    ///
    /// # Complexity
    ///
    /// Linear in the number of the organization's roles: the existing entry is found by
    /// scanning a `Vec`, so declaring *n* of them this way takes O(*n*²).
    /// For large policies use [`PolicyBuilder`] ([`PolicyBuilder::organization`]), whose
    /// lookups are hashed.
    pub fn role(&mut self, name: impl Into<String>) -> &mut Role {
        let name = name.into();
        entry(&mut self.roles, |r| r.name == name, || Role::named(&name))
    }

    /// Overrides the default member role in this organization.
    pub fn set_default_member_role(&mut self, role: impl Into<String>) -> &mut Self {
        self.default_member_role = Some(role.into());
        self
    }

    /// Maps a directory group (by id or display name) to roles, adding to any
    /// mapping the group already has.
    pub fn map_group<I, S>(&mut self, group: impl Into<String>, roles: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let group = group.into();
        // A new mapping is deduplicated too: `["r", "r"]` maps `r` once.
        let entry = entry(
            &mut self.group_roles,
            |g| g.group == group,
            || GroupRoles {
                group: group.clone(),
                roles: Vec::new(),
            },
        );
        for role in roles {
            let role = role.into();
            if !entry.roles.contains(&role) {
                entry.roles.push(role);
            }
        }
        self
    }
}

/// `text` without a leading UTF-8 byte order mark, which editors on Windows
/// write and both parsers would reject as "expected value".
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

impl std::str::FromStr for Policy {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_json(s)
    }
}

/// Implements serde's traits through the `remote = "Self"` derives, reading
/// only maps: the plain derive would also read a JSON array positionally, so
/// `[["viewer"]]` would quietly become a role.
macro_rules! objects_only {
    ($($ty:ident: $what:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;

                impl<'de> Visitor<'de> for ObjectVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }

                    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        let mut parsed = $ty::deserialize(de::value::MapAccessDeserializer::new(map))?;
                        parsed.shrink();
                        Ok(parsed)
                    }
                }

                de.deserialize_map(ObjectVisitor)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $ty::serialize(self, s)
            }
        }
    )*};
}

/// Gives back the spare capacity of the lists just parsed, as each object
/// is read: serde grows a `Vec` by doubling (a file gives no length), so a
/// role's one base sat in room for 4 and an organization's 10 roles in room
/// for 16 — at a million roles, about 160 MB of a 415 MB `lint` peak.
trait Shrink {
    fn shrink(&mut self);
}

impl Shrink for Policy {
    fn shrink(&mut self) {
        self.permissions.shrink_to_fit();
        self.roles.shrink_to_fit();
        self.organizations.shrink_to_fit();
    }
}

impl Shrink for Permission {
    fn shrink(&mut self) {}
}

impl Shrink for Role {
    fn shrink(&mut self) {
        self.permissions.shrink_to_fit();
        self.extends.shrink_to_fit();
    }
}

impl Shrink for Organization {
    fn shrink(&mut self) {
        self.roles.shrink_to_fit();
        self.group_roles.shrink_to_fit();
    }
}

impl Shrink for GroupRoles {
    fn shrink(&mut self) {
        self.roles.shrink_to_fit();
    }
}

objects_only!(
    Policy: "a policy object",
    Permission: "a permission object",
    Role: "a role object",
    Organization: "an organization object",
    GroupRoles: "a group mapping object",
);

fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a role name or a list of role names")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // One base is the common case: a list of exactly one, with no
            // room to give back (a file gives no length to size it by).
            let Some(first) = seq.next_element::<String>()? else {
                return Ok(Vec::new());
            };
            let Some(second) = seq.next_element::<String>()? else {
                return Ok(vec![first]);
            };
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64) + 2);
            out.push(first);
            out.push(second);
            while let Some(name) = seq.next_element::<String>()? {
                out.push(name);
            }
            Ok(out)
        }
    }

    de.deserialize_any(OneOrMany)
}

fn serialize_one_or_many<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    match v {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_accepts_a_string_or_a_list() {
        let p = Policy::from_json(
            r#"{"roles":[{"name":"a","extends":"b"},{"name":"c","extends":["a","b"]},{"name":"b","extends":null}]}"#,
        )
        .unwrap();
        assert_eq!(p.roles[0].extends, ["b"]);
        assert_eq!(p.roles[1].extends, ["a", "b"]);
        assert!(p.roles[2].extends.is_empty());
    }

    /// Parsed lists keep no spare room (at a million roles the slack was
    /// most of `lint`'s peak), and lists of every length read in order.
    #[test]
    fn parsed_lists_keep_no_slack() {
        let p = Policy::from_json(
            r#"{"roles":[{"name":"a","extends":[]},{"name":"b","extends":["a"]},
                {"name":"c","extends":["a","b","x"],"permissions":["p:1","p:2","p:3"]}],
                "organizations":[{"id":"o","roles":[{"name":"r1"},{"name":"r2"},{"name":"r3"}],
                "group_roles":[{"group":"g","roles":["r1","r2","r3"]}]}]}"#,
        )
        .unwrap();
        assert!(p.roles[0].extends.is_empty());
        assert_eq!(p.roles[1].extends, ["a"]);
        assert_eq!(p.roles[2].extends, ["a", "b", "x"]);
        let org = &p.organizations[0];
        let tight = [
            (p.roles.len(), p.roles.capacity()),
            (p.roles[1].extends.len(), p.roles[1].extends.capacity()),
            (p.roles[2].extends.len(), p.roles[2].extends.capacity()),
            (
                p.roles[2].permissions.len(),
                p.roles[2].permissions.capacity(),
            ),
            (org.roles.len(), org.roles.capacity()),
            (
                org.group_roles[0].roles.len(),
                org.group_roles[0].roles.capacity(),
            ),
        ];
        assert!(tight.iter().all(|(len, cap)| len == cap), "{tight:?}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let err = Policy::from_json(r#"{"roles":[{"name":"a"},{"name":"b","extend":"a"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `extend`"), "{err}");
        assert!(
            err.contains("`roles[1]`") || err.contains("`roles[1].extend`"),
            "{err}"
        );
    }

    #[test]
    fn arrays_are_not_read_as_objects() {
        for text in [
            "[]",
            r#"{"roles":[["viewer"]]}"#,
            r#"{"permissions":[["a:b"]]}"#,
            r#"{"organizations":[["o"]]}"#,
        ] {
            let err = Policy::from_json(text).unwrap_err().to_string();
            assert!(err.contains("expected a"), "{text}: {err}");
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        assert!(Policy::from_json("{} {}").is_err());
    }

    #[test]
    fn json_round_trips() {
        let mut p = Policy::new();
        p.permission("a:b");
        p.role("r").grant("a:*").extends("s");
        p.role("s").extends("t").extends("u");
        p.organization("org_1")
            .map_group("Eng", ["r"])
            .set_default_member_role("r");
        let back = Policy::from_json(&p.to_json()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn builder_setters_do_not_duplicate() {
        let mut p = Policy::new();
        p.permission("x").permission("x");
        p.role("r").grant("x").grant("x").extends("b").extends("b");
        p.role("r");
        p.organization("o")
            .map_group("g", ["r"])
            .map_group("g", ["r", "s"]);
        assert_eq!(p.permissions.len(), 1);
        assert_eq!(p.roles.len(), 1);
        assert_eq!(p.roles[0].permissions, ["x"]);
        assert_eq!(p.roles[0].extends, ["b"]);
        assert_eq!(p.organizations[0].group_roles[0].roles, ["r", "s"]);
        p.organization("o").map_group("h", ["t", "t"]);
        assert_eq!(p.organizations[0].group_roles[1].roles, ["t"]);
    }

    #[cfg(feature = "toml")]
    #[test]
    fn toml_has_the_same_shape() {
        let p = Policy::from_toml(
            "default_member_role = \"v\"\n[[permissions]]\nname = \"a:b\"\n[[roles]]\nname = \"v\"\npermissions = [\"a:b\"]\nextends = \"w\"\n",
        )
        .unwrap();
        assert_eq!(p.roles[0].extends, ["w"]);
        let err = Policy::from_toml("[[roles]]\nname = \"v\"\nextend = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `extend`"), "{err}");
    }
}
