//! Scalekit events as plain data: the envelope and the `data` of every event
//! type rolegraph acts on.
//!
//! Parsing is tolerant where Scalekit's payloads are loose (unknown fields
//! are ignored, `null` reads as absent) and strict where a wrong guess would
//! change permissions (a directory-user event without an organization, a role
//! event without a name, an `occurred_at` that is not RFC 3339).

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::error::WebhookError;

/// Longest body accepted (Scalekit's events are a few kilobytes).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One Scalekit event: the envelope plus what rolegraph reads of its `data`.
///
/// # Examples
///
/// ```
/// use rolegraph::scalekit::{Event, EventKind, Lifecycle};
///
/// let event = Event::parse(br#"{"spec_version":"1","id":"evt_1","type":"role.created",
///     "occurred_at":"2024-01-15T10:30:00.123456789Z","environment_id":"env_1",
///     "data":{"id":"role_1","name":"viewer","display_name":"Viewer","extends":"member"}}"#)?;
/// assert_eq!(event.occurred_at_ns, Some(1_705_314_600_123_456_789));
/// let EventKind::Role { change, role } = &event.kind else { unreachable!() };
/// assert_eq!(*change, Lifecycle::Created);
/// assert_eq!(role.extends.as_deref(), Some("member"));
/// # Ok::<(), rolegraph::scalekit::WebhookError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The event id (`evt_…`).
    pub id: String,
    /// The event type as sent, e.g. `organization.directory.user_updated`.
    pub event_type: String,
    /// `occurred_at` in nanoseconds since the Unix epoch, when present.
    pub occurred_at_ns: Option<u64>,
    /// The envelope's `organization_id`, when present.
    pub organization_id: Option<String>,
    /// The envelope's `environment_id`, when present.
    pub environment_id: Option<String>,
    /// What the event says, by type.
    pub kind: EventKind,
}

/// Created, updated or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// `*.created`, `*_created`.
    Created,
    /// `*.updated`, `*_updated`.
    Updated,
    /// `*.deleted`, `*_deleted`.
    Deleted,
}

/// The event types rolegraph acts on, with their data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// `organization.directory.user_created` / `_updated` / `_deleted`.
    DirectoryUser {
        /// Which.
        change: Lifecycle,
        /// The user.
        user: DirectoryUser,
    },
    /// `organization.directory.group_created` / `_updated` / `_deleted`.
    DirectoryGroup {
        /// Which.
        change: Lifecycle,
        /// The group.
        group: DirectoryGroup,
    },
    /// `role.created` / `.updated` / `.deleted`.
    Role {
        /// Which.
        change: Lifecycle,
        /// The role.
        role: RoleData,
    },
    /// `permission.created` / `.updated` / `.deleted`.
    Permission {
        /// Which.
        change: Lifecycle,
        /// The permission.
        permission: PermissionData,
    },
    /// `user.organization_membership_created` / `_updated` / `_deleted`.
    Membership {
        /// Which.
        change: Lifecycle,
        /// What the payload says of the membership.
        membership: MembershipData,
    },
    /// `organization.deleted`.
    OrganizationDeleted {
        /// The organization.
        id: String,
    },
    /// Any other type: acknowledged and ignored.
    Other,
}

/// A directory user, as `organization.directory.user_*` events carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct DirectoryUser {
    /// The directory user id (`diruser_…`).
    pub id: String,
    /// The organization (the envelope's when `data` lacks it).
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The user's email.
    #[serde(default)]
    pub email: Option<String>,
    /// `false` for a deactivated user; absent reads as active.
    #[serde(default)]
    pub active: Option<bool>,
    /// The user's full current set of roles (`data.roles[].role_name`).
    #[serde(default, deserialize_with = "role_names")]
    pub roles: Vec<String>,
}

/// A directory group, as `organization.directory.group_*` events carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct DirectoryGroup {
    /// The group id (`dirgroup_…`).
    pub id: String,
    /// The organization (the envelope's when `data` lacks it).
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The group's display name.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A role, as `role.*` events carry it: no permissions (Scalekit leaves them
/// out; they are fetched from a [`Source`](super::Source) when one is
/// configured).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RoleData {
    /// The role name: the key.
    pub name: String,
    /// The display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// The one base role (`null` or empty: none).
    #[serde(default, deserialize_with = "non_empty")]
    pub extends: Option<String>,
    /// The organization of an organization role, when the payload says.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// Direct permissions, should a payload ever carry them (then no fetch
    /// is needed).
    #[serde(default, deserialize_with = "permission_names")]
    pub permissions: Option<Vec<String>>,
}

/// A permission, as `permission.*` events carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PermissionData {
    /// The permission name.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
}

/// What a `user.organization_membership_*` payload says. Its shape is not
/// documented: the fields are looked for where Scalekit's other payloads put
/// them (`data.organization_id`, `data.user_id` / `data.user.id`,
/// `data.email` / `data.user.email`, `data.roles`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipData {
    /// The organization.
    pub organization_id: Option<String>,
    /// The Scalekit user id (`usr_…`).
    pub user_id: Option<String>,
    /// The user's email.
    pub email: Option<String>,
    /// Role names, when the payload carries them (the current one does not).
    pub roles: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    occurred_at: Option<String>,
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    environment_id: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

impl Event {
    /// Parses a raw webhook body.
    ///
    /// # Errors
    ///
    /// [`WebhookError::MalformedEvent`] when the body is not a JSON event
    /// envelope, its `occurred_at` is not RFC 3339, or the `data` of a type
    /// rolegraph acts on lacks what it needs. Unknown types only need an
    /// envelope.
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(malformed(format!(
                "the body is {} bytes, more than {MAX_BODY_BYTES}",
                body.len()
            )));
        }
        let env: Envelope = serde_json::from_slice(body)
            .map_err(|e| malformed(format!("not an event envelope: {e}")))?;
        let occurred_at_ns = env
            .occurred_at
            .as_deref()
            .map(parse_rfc3339_ns)
            .transpose()?;
        let kind = kind_of(&env.event_type, env.data, env.organization_id.as_deref())?;
        Ok(Self {
            id: env.id,
            event_type: env.event_type,
            occurred_at_ns,
            organization_id: env.organization_id,
            environment_id: env.environment_id,
            kind,
        })
    }
}

fn malformed(reason: String) -> WebhookError {
    WebhookError::MalformedEvent { reason }
}

fn kind_of(
    event_type: &str,
    data: Option<Value>,
    envelope_org: Option<&str>,
) -> Result<EventKind, WebhookError> {
    use Lifecycle::{Created, Deleted, Updated};
    let (family, change) = match event_type {
        "organization.directory.user_created" => ("user", Created),
        "organization.directory.user_updated" => ("user", Updated),
        "organization.directory.user_deleted" => ("user", Deleted),
        "organization.directory.group_created" => ("group", Created),
        "organization.directory.group_updated" => ("group", Updated),
        "organization.directory.group_deleted" => ("group", Deleted),
        "role.created" => ("role", Created),
        "role.updated" => ("role", Updated),
        "role.deleted" => ("role", Deleted),
        "permission.created" => ("permission", Created),
        "permission.updated" => ("permission", Updated),
        "permission.deleted" => ("permission", Deleted),
        "user.organization_membership_created" => ("membership", Created),
        "user.organization_membership_updated" => ("membership", Updated),
        "user.organization_membership_deleted" => ("membership", Deleted),
        "organization.deleted" => ("organization", Deleted),
        _ => return Ok(EventKind::Other),
    };
    let data = data.unwrap_or(Value::Null);
    fn typed<'a>(
        event_type: &'a str,
        what: &'static str,
    ) -> impl Fn(serde_json::Error) -> WebhookError + 'a {
        move |e| malformed(format!("`data` of `{event_type}` is not {what}: {e}"))
    }
    let typed = |what: &'static str| typed(event_type, what);
    Ok(match family {
        "user" => {
            let mut user: DirectoryUser =
                serde_json::from_value(data).map_err(typed("a directory user"))?;
            nonempty(&user.id, event_type, "data.id")?;
            if user.organization_id.as_deref().is_none_or(str::is_empty) {
                user.organization_id = envelope_org.map(str::to_owned);
            }
            nonempty(
                user.organization_id.as_deref().unwrap_or_default(),
                event_type,
                "organization_id",
            )?;
            EventKind::DirectoryUser { change, user }
        }
        "group" => {
            let mut group: DirectoryGroup =
                serde_json::from_value(data).map_err(typed("a directory group"))?;
            nonempty(&group.id, event_type, "data.id")?;
            if group.organization_id.as_deref().is_none_or(str::is_empty) {
                group.organization_id = envelope_org.map(str::to_owned);
            }
            nonempty(
                group.organization_id.as_deref().unwrap_or_default(),
                event_type,
                "organization_id",
            )?;
            EventKind::DirectoryGroup { change, group }
        }
        "role" => {
            let role: RoleData = serde_json::from_value(data).map_err(typed("a role"))?;
            nonempty(&role.name, event_type, "data.name")?;
            EventKind::Role { change, role }
        }
        "permission" => {
            let permission: PermissionData =
                serde_json::from_value(data).map_err(typed("a permission"))?;
            nonempty(&permission.name, event_type, "data.name")?;
            EventKind::Permission { change, permission }
        }
        "membership" => EventKind::Membership {
            change,
            membership: membership_of(&data, envelope_org),
        },
        _ => {
            // `data` is the organization; the envelope names it too.
            let id = data
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or(envelope_org)
                .unwrap_or_default()
                .to_owned();
            nonempty(&id, event_type, "organization id")?;
            EventKind::OrganizationDeleted { id }
        }
    })
}

fn nonempty(value: &str, event_type: &str, field: &str) -> Result<(), WebhookError> {
    if value.trim().is_empty() {
        return Err(malformed(format!("`{event_type}` has no `{field}`")));
    }
    Ok(())
}

fn membership_of(data: &Value, envelope_org: Option<&str>) -> MembershipData {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let user = data.get("user");
    MembershipData {
        organization_id: text(data.get("organization_id")).or(envelope_org.map(str::to_owned)),
        user_id: text(data.get("user_id")).or_else(|| text(user.and_then(|u| u.get("id")))),
        email: text(data.get("email")).or_else(|| text(user.and_then(|u| u.get("email")))),
        roles: data
            .get("roles")
            .and_then(Value::as_array)
            .map(|roles| roles.iter().filter_map(role_name_of).collect()),
    }
}

/// A role name from `{"role_name": …}`, `{"name": …}` or a bare string.
fn role_name_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("role_name")
            .or_else(|| o.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// `[{"role_name": …}]` (or `null`) as names, duplicates and blanks dropped.
fn role_names<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let value = Option::<Vec<Value>>::deserialize(de)?.unwrap_or_default();
    let mut names: Vec<String> = Vec::with_capacity(value.len());
    for v in &value {
        let name = role_name_of(v).ok_or_else(|| {
            de::Error::custom("a role is neither `{\"role_name\": …}` nor a name")
        })?;
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Permission names from `["a"]` or `[{"name": "a"}]`.
fn permission_names<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Vec<String>>, D::Error> {
    let Some(value) = Option::<Vec<Value>>::deserialize(de)? else {
        return Ok(None);
    };
    let mut names = Vec::with_capacity(value.len());
    for v in &value {
        let name = role_name_of(v).ok_or_else(|| {
            de::Error::custom("a permission is neither `{\"name\": …}` nor a name")
        })?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Some(names))
}

fn non_empty<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(de)?.filter(|s| !s.trim().is_empty()))
}

/// RFC 3339 (`2025-01-06T18:44:25.153954Z`, nanoseconds at most, any offset)
/// to nanoseconds since the Unix epoch.
///
/// # Errors
///
/// [`WebhookError::MalformedEvent`] for text that is not RFC 3339 or a time
/// before 1970.
pub fn parse_rfc3339_ns(text: &str) -> Result<u64, WebhookError> {
    let bad = || malformed(format!("`occurred_at` `{text}` is not an RFC 3339 time"));
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    u64::try_from(t.unix_timestamp_nanos()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_micro_and_nanoseconds() {
        assert_eq!(
            parse_rfc3339_ns("2025-01-06T18:44:25.153954Z").unwrap(),
            1_736_189_065_153_954_000
        );
        assert_eq!(
            parse_rfc3339_ns("2024-09-25T02:26:39.036398577Z").unwrap(),
            1_727_231_199_036_398_577
        );
        assert_eq!(
            parse_rfc3339_ns("2024-09-25T04:26:39.036398577+02:00").unwrap(),
            1_727_231_199_036_398_577
        );
        assert!(parse_rfc3339_ns("1969-12-31T23:59:59Z").is_err());
        assert!(parse_rfc3339_ns("yesterday").is_err());
    }

    #[test]
    fn unknown_types_need_only_an_envelope() {
        let e = Event::parse(br#"{"id":"evt_9","type":"user.login"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Other);
        assert_eq!(e.occurred_at_ns, None);
    }

    #[test]
    fn a_directory_user_takes_the_envelope_organization() {
        let e = Event::parse(
            br#"{"id":"e","type":"organization.directory.user_updated","organization_id":"org_1",
                 "data":{"id":"diruser_1","roles":[{"role_name":"a"},{"role_name":"a"},{"role_name":"b"}]}}"#,
        )
        .unwrap();
        let EventKind::DirectoryUser { user, .. } = e.kind else {
            panic!("not a user")
        };
        assert_eq!(user.organization_id.as_deref(), Some("org_1"));
        assert_eq!(user.roles, ["a", "b"]);
    }

    #[test]
    fn a_user_without_organization_is_malformed() {
        let err = Event::parse(
            br#"{"id":"e","type":"organization.directory.user_updated","data":{"id":"diruser_1"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("organization_id"), "{err}");
    }

    #[test]
    fn membership_payloads_are_read_loosely() {
        let e = Event::parse(
            br#"{"id":"e","type":"user.organization_membership_deleted","organization_id":"org_1",
                 "data":{"user":{"id":"usr_1","email":"A@x.io"}}}"#,
        )
        .unwrap();
        let EventKind::Membership { membership, change } = e.kind else {
            panic!("not a membership")
        };
        assert_eq!(change, Lifecycle::Deleted);
        assert_eq!(membership.organization_id.as_deref(), Some("org_1"));
        assert_eq!(membership.user_id.as_deref(), Some("usr_1"));
        assert_eq!(membership.email.as_deref(), Some("A@x.io"));
        assert_eq!(membership.roles, None);
    }
}
