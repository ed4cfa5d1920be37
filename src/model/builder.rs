//! [`PolicyBuilder`]: the `Policy` setters with hash indexes, for policies of
//! any size.

use std::fmt;

use hashbrown::HashTable;

use super::{GroupRoles, Organization, Permission, Policy, Role};

/// One role of a [`PolicyBuilder`] or an [`OrganizationBuilder`]: a [`Role`]
/// (it dereferences to one) whose setters keep the grants and bases unique
/// in O(1) amortized time, where [`Role::grant`] and [`Role::extends`]
/// search the list.
///
/// The order and duplicate behaviour are exactly `Role`'s: the first grant
/// of a name appends it, a repeat changes nothing.
///
/// # Complexity
///
/// Up to [`RoleBuilder::SCAN`] entries a list is searched (cheaper than
/// hashing at that size); past it the list gets a hash index, built once,
/// and each later insert is one expected-O(1) probe.
///
/// # Examples
///
/// ```
/// use rolegraph::Policy;
///
/// let mut builder = Policy::builder();
/// let role = builder.role("auditor");
/// for i in 0..5_000 {
///     role.grant(format!("logs:read-{i}"));
/// }
/// role.grant("logs:read-0").extends("viewer").extends("viewer");
/// assert_eq!(role.permissions.len(), 5_000);
/// assert_eq!(role.extends, ["viewer"]);
/// assert_eq!(role.name(), "auditor");
/// ```
#[derive(Default, Clone)]
pub struct RoleBuilder {
    role: Role,
    /// `role.permissions` by name, once it outgrows [`Self::SCAN`].
    grants: Option<Box<Index>>,
    /// `role.extends` by name, likewise.
    bases: Option<Box<Index>>,
}

impl RoleBuilder {
    /// Lists up to this long are searched; longer ones are hash-indexed.
    pub const SCAN: usize = 16;

    /// The role's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.role.name
    }

    /// Adds a direct grant (a permission name or a wildcard such as
    /// `projects:*`), once: as [`Role::grant`], in O(1) amortized time.
    pub fn grant(&mut self, permission: impl Into<String>) -> &mut Self {
        insert_once(
            &mut self.role.permissions,
            &mut self.grants,
            permission.into(),
        );
        self
    }

    /// Adds a base role, once: as [`Role::extends`], in O(1) amortized time.
    pub fn extends(&mut self, base: impl Into<String>) -> &mut Self {
        insert_once(&mut self.role.extends, &mut self.bases, base.into());
        self
    }

    /// Sets the display name.
    pub fn display_name(&mut self, display_name: impl Into<String>) -> &mut Self {
        self.role.display_name(display_name);
        self
    }

    /// Sets the description.
    pub fn description(&mut self, description: impl Into<String>) -> &mut Self {
        self.role.description(description);
        self
    }

    /// The role built so far.
    #[must_use]
    pub fn into_role(self) -> Role {
        self.role
    }
}

impl From<Role> for RoleBuilder {
    /// Continues building `role`; where it names a grant or base twice, both
    /// stay, as `Role`'s setters would leave them.
    fn from(role: Role) -> Self {
        Self {
            role,
            grants: None,
            bases: None,
        }
    }
}

impl std::ops::Deref for RoleBuilder {
    type Target = Role;

    fn deref(&self) -> &Role {
        &self.role
    }
}

impl fmt::Debug for RoleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.role.fmt(f)
    }
}

/// Appends `item` to `list` unless it is there: a scan while the list is
/// short, then through `index` (built from the list on first need).
fn insert_once(list: &mut Vec<String>, index: &mut Option<Box<Index>>, item: String) {
    if index.is_none() {
        if list.len() < RoleBuilder::SCAN {
            if !list.contains(&item) {
                list.push(item);
            }
            return;
        }
        let mut built = Box::<Index>::default();
        built.index_all(list, |s| s);
        *index = Some(built);
    }
    if let Some(index) = index {
        index.position(list, |s| s, &item, || item.clone());
    }
}

/// Builds a [`Policy`] in code, like [`Policy::permission`], [`Policy::role`]
/// and [`Policy::organization`], but finds an existing entry by name through a
/// hash index instead of a linear search.
///
/// # Complexity
///
/// Declaring a permission, a role, an organization, an organization role or a
/// group mapping costs O(1) expected time (plus the name's length), so a
/// policy of *n* entries builds in O(*n*). The `Policy` setters search a `Vec`
/// and build the same policy in O(*n*²).
///
/// A role's own grants and bases ([`RoleBuilder::grant`],
/// [`RoleBuilder::extends`]) are kept unique in O(1) amortized time too: a
/// short list is scanned, and a role whose list outgrows
/// [`RoleBuilder::SCAN`] entries gets a hash index of it, so a role with
/// 5,000 grants costs 5,000 probes, not 12.5 million comparisons. A group's
/// roles ([`OrganizationBuilder::map_group`]) likewise.
///
/// A role is returned as a [`RoleBuilder`], which reads as a [`Role`] and
/// has `Role`'s setters; it cannot be renamed, so the index always finds it.
///
/// # Examples
///
/// ```
/// use rolegraph::{Policy, PolicyBuilder};
///
/// let mut builder: PolicyBuilder = Policy::builder();
/// builder.permission("projects:read").permission("projects:update");
/// builder.role("viewer").grant("projects:read");
/// builder.role("editor").extends("viewer").grant("projects:update");
/// builder.set_default_member_role("viewer");
/// builder
///     .organization("org_1")
///     .map_group("Engineering", ["editor"])
///     .role("manager")
///     .extends("editor");
///
/// // Many roles: each `role` call is a hash lookup, not a scan.
/// for i in 0..10_000 {
///     builder.role(format!("team_{i}")).extends("viewer");
/// }
///
/// let policy: Policy = builder.build();
/// assert_eq!(policy.roles.len(), 10_002);
/// let snapshot = policy.compile()?;
/// assert_eq!(snapshot.roles_len(), 10_003);
/// # Ok::<(), rolegraph::CompileError>(())
/// ```
#[derive(Default, Clone)]
pub struct PolicyBuilder {
    /// Everything but the organizations, which live in `organizations`.
    policy: Policy,
    permissions: Index,
    /// The environment roles, which `policy.roles` receives at `build`.
    role_list: Vec<RoleBuilder>,
    roles: Index,
    organizations: Vec<OrganizationBuilder>,
    organization_index: Index,
}

/// One organization of a [`PolicyBuilder`], with its own indexes.
///
/// Made by [`PolicyBuilder::organization`]; its methods mirror
/// [`Organization`]'s setters.
///
/// # Examples
///
/// ```
/// use rolegraph::Policy;
///
/// let mut builder = Policy::builder();
/// let org = builder.organization("org_1");
/// org.set_default_member_role("member");
/// org.role("member").grant("projects:read");
/// assert_eq!(org.id(), "org_1");
///
/// let policy = builder.build();
/// assert_eq!(policy.organizations[0].roles[0].name, "member");
/// ```
#[derive(Default, Clone)]
pub struct OrganizationBuilder {
    /// Everything but the roles, which live in `role_list`.
    organization: Organization,
    role_list: Vec<RoleBuilder>,
    roles: Index,
    groups: Index,
    /// Each group mapping's roles by name, once they outgrow
    /// [`RoleBuilder::SCAN`] (by the mapping's position; may be shorter).
    group_roles: Vec<Option<Box<Index>>>,
}

impl Policy {
    /// A [`PolicyBuilder`]: the same setters as `Policy`, in O(1) each.
    ///
    /// # Examples
    ///
    /// ```
    /// use rolegraph::Policy;
    ///
    /// let mut builder = Policy::builder();
    /// builder.permission("a:b");
    /// builder.role("r").grant("a:b");
    /// assert_eq!(builder.build().roles.len(), 1);
    /// ```
    #[must_use]
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }
}

impl PolicyBuilder {
    /// An empty builder; the same as [`Policy::builder`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a permission (once: declaring it again changes nothing).
    pub fn permission(&mut self, name: impl Into<String>) -> &mut Self {
        let name = name.into();
        self.permissions.position(
            &mut self.policy.permissions,
            |p| &p.name,
            &name,
            || Permission {
                name: name.clone(),
                description: None,
            },
        );
        self
    }

    /// The environment role `name`, created empty if it does not exist yet.
    pub fn role(&mut self, name: impl Into<String>) -> &mut RoleBuilder {
        let name = name.into();
        let at = self.roles.position(
            &mut self.role_list,
            |r| &r.role.name,
            &name,
            || Role::named(name.clone()).into(),
        );
        element(&mut self.role_list, at)
    }

    /// The organization `id`, created empty if it does not exist yet.
    pub fn organization(&mut self, id: impl Into<String>) -> &mut OrganizationBuilder {
        let id = id.into();
        let at = self.organization_index.position(
            &mut self.organizations,
            |o| &o.organization.id,
            &id,
            || OrganizationBuilder {
                organization: Organization {
                    id: id.clone(),
                    ..Organization::default()
                },
                ..OrganizationBuilder::default()
            },
        );
        element(&mut self.organizations, at)
    }

    /// Sets the environment's default creator role.
    pub fn set_default_creator_role(&mut self, role: impl Into<String>) -> &mut Self {
        self.policy.set_default_creator_role(role);
        self
    }

    /// Sets the environment's default member role.
    pub fn set_default_member_role(&mut self, role: impl Into<String>) -> &mut Self {
        self.policy.set_default_member_role(role);
        self
    }

    /// The policy, entries in the order they were first declared.
    #[must_use]
    pub fn build(self) -> Policy {
        let mut policy = self.policy;
        policy.roles = roles_of(self.role_list);
        policy.organizations = self
            .organizations
            .into_iter()
            .map(|o| {
                let mut organization = o.organization;
                organization.roles = roles_of(o.role_list);
                organization
            })
            .collect();
        policy
    }

    /// Builds the policy and compiles it: `self.build().compile()`.
    ///
    /// # Errors
    ///
    /// As [`Policy::compile`].
    pub fn compile(self) -> Result<crate::Snapshot, crate::CompileError> {
        self.build().compile()
    }
}

/// Continues building an existing policy. Where the policy names an entry
/// twice, the setters find the first, as the `Policy` setters do.
impl From<Policy> for PolicyBuilder {
    fn from(mut policy: Policy) -> Self {
        let organizations: Vec<OrganizationBuilder> = std::mem::take(&mut policy.organizations)
            .into_iter()
            .map(|mut organization| {
                let role_list = builders_of(std::mem::take(&mut organization.roles));
                let mut roles = Index::default();
                roles.index_all(&role_list, |r| &r.role.name);
                let mut groups = Index::default();
                groups.index_all(&organization.group_roles, |g| &g.group);
                OrganizationBuilder {
                    organization,
                    role_list,
                    roles,
                    groups,
                    group_roles: Vec::new(),
                }
            })
            .collect();
        let mut builder = Self::default();
        builder
            .permissions
            .index_all(&policy.permissions, |p| &p.name);
        builder.role_list = builders_of(std::mem::take(&mut policy.roles));
        builder
            .roles
            .index_all(&builder.role_list, |r| &r.role.name);
        builder
            .organization_index
            .index_all(&organizations, |o| &o.organization.id);
        builder.organizations = organizations;
        builder.policy = policy;
        builder
    }
}

impl OrganizationBuilder {
    /// The organization's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.organization.id
    }

    /// The organization role `name`, created empty if it does not exist yet.
    pub fn role(&mut self, name: impl Into<String>) -> &mut RoleBuilder {
        let name = name.into();
        let roles = &mut self.role_list;
        let at = self.roles.position(
            roles,
            |r| &r.role.name,
            &name,
            || Role::named(name.clone()).into(),
        );
        element(roles, at)
    }

    /// Overrides the default member role in this organization.
    pub fn set_default_member_role(&mut self, role: impl Into<String>) -> &mut Self {
        self.organization.set_default_member_role(role);
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
        let mappings = &mut self.organization.group_roles;
        let at = self.groups.position(
            mappings,
            |g| &g.group,
            &group,
            || GroupRoles {
                group: group.clone(),
                roles: Vec::new(),
            },
        );
        let entry = element(mappings, at);
        if self.group_roles.len() <= at {
            self.group_roles.resize_with(at + 1, || None);
        }
        let index = element(&mut self.group_roles, at);
        for role in roles {
            insert_once(&mut entry.roles, index, role.into());
        }
        self
    }
}

impl fmt::Debug for PolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("permissions", &self.policy.permissions.len())
            .field("roles", &self.role_list.len())
            .field("organizations", &self.organizations.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OrganizationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrganizationBuilder")
            .field("id", &self.organization.id)
            .field("roles", &self.role_list.len())
            .field("group_roles", &self.organization.group_roles.len())
            .finish_non_exhaustive()
    }
}

/// The roles the builders hold, in order.
fn roles_of(builders: Vec<RoleBuilder>) -> Vec<Role> {
    builders.into_iter().map(RoleBuilder::into_role).collect()
}

/// Builders continuing `roles`, in order.
fn builders_of(roles: Vec<Role>) -> Vec<RoleBuilder> {
    roles.into_iter().map(RoleBuilder::from).collect()
}

/// `items[at]`, for an `at` that [`Index::position`] just returned.
#[expect(
    clippy::indexing_slicing,
    reason = "the index was just found or pushed"
)]
fn element<T>(items: &mut [T], at: usize) -> &mut T {
    &mut items[at]
}

/// Positions in a `Vec` by key: `(hash of the key, position)`. The hash is
/// stored so that rehashing never needs the items.
#[derive(Default, Clone)]
struct Index {
    table: HashTable<(u64, usize)>,
    state: ahash::RandomState,
}

impl Index {
    /// The position of the item whose key is `key`, pushing `make()` when
    /// there is none.
    fn position<T>(
        &mut self,
        items: &mut Vec<T>,
        key_of: impl Fn(&T) -> &String,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> usize {
        let hash = self.state.hash_one(key);
        let found = self.table.find(hash, |&(_, at)| {
            items.get(at).is_some_and(|item| key_of(item) == key)
        });
        if let Some(&(_, at)) = found {
            return at;
        }
        let at = items.len();
        items.push(make());
        self.table.insert_unique(hash, (hash, at), |&(h, _)| h);
        at
    }

    /// Indexes `items` as they are; for a key named twice, the first.
    fn index_all<T>(&mut self, items: &[T], key_of: impl Fn(&T) -> &String) {
        self.table.reserve(items.len(), |&(h, _)| h);
        for (at, item) in items.iter().enumerate() {
            let key = key_of(item);
            let hash = self.state.hash_one(key.as_str());
            let known = self.table.find(hash, |&(_, other)| {
                items.get(other).is_some_and(|o| key_of(o) == key)
            });
            if known.is_none() {
                self.table.insert_unique(hash, (hash, at), |&(h, _)| h);
            }
        }
    }
}
