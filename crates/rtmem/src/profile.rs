//! Profiles: a whole memory-management configuration in one TOML file.
//!
//! A profile picks the collector, the limits and growth of every space, the
//! young generation and TLAB sizes, the collection trigger, the number of GC
//! workers and the debugging switches. Four are built in (`balanced` — the
//! default, `throughput`, `small-footprint`, `epsilon`; the files are in the
//! workspace's `profiles/` directory). A profile file may name a built-in
//! profile to start from (`inherits = "throughput"`, default `balanced`) and
//! set only the keys it changes.
//!
//! Every key is validated when the file is read — including keys that no
//! collector uses yet — and every error names the file, the key and the value.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rtmem_base::{SpaceBudget, SpaceType};
use rtmem_gc::stats::GcKind;
use rtmem_gc::trigger::TriggerConfig;
use rtmem_gc::{GcConfig, HeapConfig};
use serde::Serialize;

/// The built-in profiles: (name, TOML text).
const BUILTIN: [(&str, &str); 4] = [
    ("balanced", include_str!("../../../profiles/balanced.toml")),
    (
        "throughput",
        include_str!("../../../profiles/throughput.toml"),
    ),
    (
        "small-footprint",
        include_str!("../../../profiles/small-footprint.toml"),
    ),
    ("epsilon", include_str!("../../../profiles/epsilon.toml")),
];

/// The name of the default profile.
pub const DEFAULT_PROFILE: &str = "balanced";

/// The environment variable naming the profile (a built-in name or a path).
pub const PROFILE_ENV: &str = "RTMEM_PROFILE";

/// A complete memory-management configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The profile's name (a built-in name, or the file's stem).
    pub name: String,
    /// Where it was read from (`builtin:NAME` or a path).
    pub source: String,
    /// One line saying what the profile is for.
    pub description: String,
    /// The collector.
    pub gc: GcKind,
    /// Parallel GC worker threads.
    pub gc_workers: usize,
    /// Run the heap verifier before and after every collection.
    pub verify: bool,
    /// Collect every this many allocations (0 = off): a GC stress mode.
    pub stress_every: u64,
    /// Object-heap layout.
    pub heap: HeapConfig,
    /// Collection trigger.
    pub trigger: TriggerConfig,
    /// Per-space size, limit and growth, indexed by [`SpaceType::index`].
    pub spaces: [SpaceBudget; SpaceType::COUNT],
}

/// Why a profile could not be loaded. Every message names the file, and
/// where a key is at fault, the key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileError {
    /// No built-in profile has this name.
    UnknownProfile {
        /// The name asked for.
        name: String,
    },
    /// The file could not be read.
    Io {
        /// The file.
        file: String,
        /// The system's message.
        message: String,
    },
    /// The file is not valid TOML.
    Syntax {
        /// The file.
        file: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that profiles do not have.
    UnknownKey {
        /// The file.
        file: String,
        /// The full dotted key.
        key: String,
        /// The keys allowed at that place.
        known: Vec<String>,
    },
    /// A key whose value has the wrong type, is out of range, or contradicts another key.
    BadValue {
        /// The file.
        file: String,
        /// The full dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::UnknownProfile { name } => {
                let known: Vec<_> = BUILTIN.iter().map(|(n, _)| *n).collect();
                write!(
                    f,
                    "unknown profile `{name}` (known profiles: {})",
                    known.join(", ")
                )
            }
            ProfileError::Io { file, message } => write!(f, "{file}: cannot read: {message}"),
            ProfileError::Syntax { file, message } => {
                write!(f, "{file}: not valid TOML: {message}")
            }
            ProfileError::UnknownKey { file, key, known } => {
                write!(
                    f,
                    "{file}: unknown key `{key}` (allowed here: {})",
                    known.join(", ")
                )
            }
            ProfileError::BadValue {
                file,
                key,
                value,
                problem,
            } => {
                write!(f, "{file}: key `{key}` = {value}: {problem}")
            }
        }
    }
}

impl std::error::Error for ProfileError {}

impl Default for Profile {
    /// The `balanced` profile.
    fn default() -> Self {
        Profile::from_name(DEFAULT_PROFILE).expect("the built-in default profile is valid")
    }
}

impl Profile {
    /// The names and one-line descriptions of the built-in profiles.
    pub fn builtin() -> Vec<(&'static str, String)> {
        BUILTIN
            .iter()
            .map(|(name, _)| {
                (
                    *name,
                    Profile::from_name(name)
                        .expect("built-in profiles are valid")
                        .description,
                )
            })
            .collect()
    }

    /// A built-in profile by name.
    pub fn from_name(name: &str) -> Result<Profile, ProfileError> {
        let (name, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            ProfileError::UnknownProfile {
                name: name.to_owned(),
            }
        })?;
        Profile::parse(&format!("builtin:{name}"), name, text)
    }

    /// A profile file. Its name is the file's stem.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Profile, ProfileError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Profile::parse(&file, &name, &text)
    }

    /// A profile named by a built-in name or a path: a value containing a `/`
    /// or ending in `.toml` is a path.
    pub fn from_name_or_path(value: &str) -> Result<Profile, ProfileError> {
        if value.contains('/') || value.ends_with(".toml") {
            Profile::from_file(value)
        } else {
            Profile::from_name(value)
        }
    }

    /// The profile named by `RTMEM_PROFILE`, or the default if it is unset or empty.
    pub fn from_env() -> Result<Profile, ProfileError> {
        match std::env::var(PROFILE_ENV) {
            Ok(value) if !value.trim().is_empty() => Profile::from_name_or_path(value.trim()),
            _ => Ok(Profile::default()),
        }
    }

    /// Parses profile text. `file` names the source in error messages.
    ///
    /// Keys left out keep the value of the profile named by `inherits`
    /// (`balanced` if absent); built-in profiles inherit from nothing and must
    /// set every key.
    pub fn parse(file: &str, name: &str, text: &str) -> Result<Profile, ProfileError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ProfileError::Syntax {
                    file: file.to_owned(),
                    message: e.to_string(),
                })?;
        let root = Reader {
            file,
            prefix: String::new(),
            table: &table,
        };
        let is_builtin = file.starts_with("builtin:");
        let base = match root.get_str("inherits")? {
            Some(parent) if is_builtin => {
                return Err(root.bad(
                    "inherits",
                    &parent,
                    "built-in profiles inherit from nothing",
                ));
            }
            Some(parent) => Some(Profile::from_name(&parent).map_err(|_| {
                root.bad(
                    "inherits",
                    &parent,
                    &ProfileError::UnknownProfile {
                        name: parent.clone(),
                    }
                    .to_string(),
                )
            })?),
            None if is_builtin => None,
            None => Some(Profile::default()),
        };
        let p = Profile::read(&root, base, name, file)?;
        p.validate(file)?;
        Ok(p)
    }

    fn read(
        root: &Reader<'_>,
        base: Option<Profile>,
        name: &str,
        file: &str,
    ) -> Result<Profile, ProfileError> {
        // Built-in profiles have no base: every key is required.
        let need = |r: &Reader<'_>, key: &str| r.missing(key);
        macro_rules! field {
            ($reader:expr, $get:ident, $key:literal, $base:expr) => {
                match $reader.$get($key)? {
                    Some(v) => v,
                    None => match &base {
                        Some(b) => $base(b),
                        None => return Err(need(&$reader, $key)),
                    },
                }
            };
        }
        let heap_t = root.table("heap")?;
        let trig_t = root.table("trigger")?;
        let spaces_t = root.table("spaces")?;
        root.only(&[
            "inherits",
            "description",
            "gc",
            "gc_workers",
            "verify",
            "stress_every",
            "heap",
            "trigger",
            "spaces",
        ])?;
        heap_t.only(&[
            "young",
            "tlab",
            "large_threshold",
            "card_size",
            "promotion_age",
        ])?;
        trig_t.only(&["kind", "growth_percent", "occupancy_percent", "min_heap"])?;
        let names: Vec<&str> = SpaceType::ALL.iter().map(|s| s.name()).collect();
        spaces_t.only(&names)?;
        let mut spaces = [SpaceBudget {
            initial: 0,
            max: 0,
            growth_percent: 0,
        }; SpaceType::COUNT];
        for space in SpaceType::ALL {
            let r = spaces_t.table(space.name())?;
            r.only(&["initial", "max", "growth_percent"])?;
            let i = space.index();
            spaces[i] = SpaceBudget {
                initial: field!(r, get_size, "initial", |b: &Profile| b.spaces[i].initial),
                max: field!(r, get_size, "max", |b: &Profile| b.spaces[i].max),
                growth_percent: field!(r, get_u32, "growth_percent", |b: &Profile| b.spaces[i]
                    .growth_percent),
            };
        }
        Ok(Profile {
            name: name.to_owned(),
            source: file.to_owned(),
            description: field!(root, get_str, "description", |b: &Profile| b
                .description
                .clone()),
            gc: field!(root, get_enum, "gc", |b: &Profile| b.gc),
            gc_workers: field!(root, get_usize, "gc_workers", |b: &Profile| b.gc_workers),
            verify: field!(root, get_bool, "verify", |b: &Profile| b.verify),
            stress_every: field!(root, get_u64, "stress_every", |b: &Profile| b.stress_every),
            heap: HeapConfig {
                young: field!(heap_t, get_size, "young", |b: &Profile| b.heap.young),
                tlab: field!(heap_t, get_size, "tlab", |b: &Profile| b.heap.tlab),
                large_threshold: field!(heap_t, get_size, "large_threshold", |b: &Profile| b
                    .heap
                    .large_threshold),
                card_size: field!(heap_t, get_size, "card_size", |b: &Profile| b
                    .heap
                    .card_size),
                promotion_age: field!(heap_t, get_u8, "promotion_age", |b: &Profile| b
                    .heap
                    .promotion_age),
            },
            trigger: TriggerConfig {
                kind: field!(trig_t, get_enum, "kind", |b: &Profile| b.trigger.kind),
                growth_percent: field!(trig_t, get_u32, "growth_percent", |b: &Profile| b
                    .trigger
                    .growth_percent),
                occupancy_percent: field!(trig_t, get_u32, "occupancy_percent", |b: &Profile| b
                    .trigger
                    .occupancy_percent),
                min_heap: field!(trig_t, get_size, "min_heap", |b: &Profile| b
                    .trigger
                    .min_heap),
            },
            spaces,
        })
    }

    /// Range and consistency checks; errors name the key and its value.
    fn validate(&self, file: &str) -> Result<(), ProfileError> {
        let bad = |key: &str, value: String, problem: String| {
            Err(ProfileError::BadValue {
                file: file.to_owned(),
                key: key.to_owned(),
                value,
                problem,
            })
        };
        let size = |v: usize| format!("\"{}\"", format_size(v));
        if !(1..=256).contains(&self.gc_workers) {
            return bad(
                "gc_workers",
                self.gc_workers.to_string(),
                "must be between 1 and 256".into(),
            );
        }
        let h = &self.heap;
        let object = self.space(SpaceType::Object);
        if h.young < 64 << 10 {
            return bad("heap.young", size(h.young), "must be at least 64KiB".into());
        }
        if h.young > object.max {
            return bad(
                "heap.young",
                size(h.young),
                format!(
                    "the young generation is larger than the object space (spaces.object.max = {})",
                    size(object.max)
                ),
            );
        }
        if h.tlab < 1024 || !h.tlab.is_multiple_of(8) {
            return bad(
                "heap.tlab",
                size(h.tlab),
                "must be a multiple of 8 bytes and at least 1KiB".into(),
            );
        }
        if h.tlab > h.young {
            return bad(
                "heap.tlab",
                size(h.tlab),
                format!(
                    "larger than the young generation (heap.young = {})",
                    size(h.young)
                ),
            );
        }
        if !(512..=(1 << 20)).contains(&h.large_threshold) {
            return bad(
                "heap.large_threshold",
                size(h.large_threshold),
                "must be between 512B and 1MiB".into(),
            );
        }
        if !h.card_size.is_power_of_two() || !(64..=4096).contains(&h.card_size) {
            return bad(
                "heap.card_size",
                h.card_size.to_string(),
                "must be a power of two between 64 and 4096".into(),
            );
        }
        if !(1..=15).contains(&h.promotion_age) {
            return bad(
                "heap.promotion_age",
                h.promotion_age.to_string(),
                "must be between 1 and 15".into(),
            );
        }
        let t = &self.trigger;
        if !(1..=100).contains(&t.occupancy_percent) {
            return bad(
                "trigger.occupancy_percent",
                t.occupancy_percent.to_string(),
                "must be between 1 and 100".into(),
            );
        }
        if !(10..=1000).contains(&t.growth_percent) {
            return bad(
                "trigger.growth_percent",
                t.growth_percent.to_string(),
                "must be between 10 and 1000".into(),
            );
        }
        if t.min_heap > object.max {
            return bad(
                "trigger.min_heap",
                size(t.min_heap),
                format!(
                    "larger than the object space (spaces.object.max = {})",
                    size(object.max)
                ),
            );
        }
        for space in SpaceType::ALL {
            let s = self.space(space);
            if s.initial > s.max {
                return bad(
                    &format!("spaces.{space}.initial"),
                    size(s.initial),
                    format!("larger than spaces.{space}.max = {}", size(s.max)),
                );
            }
            if s.growth_percent > 1000 {
                return bad(
                    &format!("spaces.{space}.growth_percent"),
                    s.growth_percent.to_string(),
                    "must be at most 1000".into(),
                );
            }
        }
        Ok(())
    }

    /// The spaces this profile asks for: every space's budget, the large
    /// object threshold, default address-space reservation and pool size.
    pub fn spaces_config(&self) -> rtmem_spaces::SpacesConfig {
        rtmem_spaces::SpacesConfig {
            budgets: self.spaces,
            large_threshold: self.heap.large_threshold,
            ..rtmem_spaces::SpacesConfig::default()
        }
    }

    /// The collector's configuration this profile asks for.
    pub fn gc_config(&self) -> GcConfig {
        GcConfig {
            kind: self.gc,
            gc_workers: self.gc_workers,
            verify: self.verify,
            stress_every: self.stress_every,
            heap: self.heap,
            trigger: self.trigger,
        }
    }

    /// The configuration of one space.
    pub fn space(&self, space: SpaceType) -> &SpaceBudget {
        &self.spaces[space.index()]
    }

    /// The profile as TOML, every key resolved; parsing it gives this profile back.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let q = |v: usize| format!("\"{}\"", format_size(v));
        let _ = writeln!(out, "# profile `{}` from {}", self.name, self.source);
        let _ = writeln!(out, "description = {:?}", self.description);
        let _ = writeln!(out, "gc = \"{}\"", self.gc);
        let _ = writeln!(out, "gc_workers = {}", self.gc_workers);
        let _ = writeln!(out, "verify = {}", self.verify);
        let _ = writeln!(out, "stress_every = {}", self.stress_every);
        let h = &self.heap;
        let _ = writeln!(
            out,
            "\n[heap]\nyoung = {}\ntlab = {}\nlarge_threshold = {}\ncard_size = {}\npromotion_age = {}",
            q(h.young),
            q(h.tlab),
            q(h.large_threshold),
            h.card_size,
            h.promotion_age
        );
        let t = &self.trigger;
        let _ = writeln!(
            out,
            "\n[trigger]\nkind = \"{}\"\ngrowth_percent = {}\noccupancy_percent = {}\nmin_heap = {}",
            t.kind,
            t.growth_percent,
            t.occupancy_percent,
            q(t.min_heap)
        );
        for space in SpaceType::ALL {
            let s = self.space(space);
            let _ = writeln!(
                out,
                "\n[spaces.{space}]\ninitial = {}\nmax = {}\ngrowth_percent = {}",
                q(s.initial),
                q(s.max),
                s.growth_percent
            );
        }
        out
    }
}

/// Reads the keys of one TOML table, naming them by their full dotted path.
struct Reader<'a> {
    file: &'a str,
    prefix: String,
    table: &'a toml::Table,
}

static EMPTY: std::sync::LazyLock<toml::Table> = std::sync::LazyLock::new(toml::Table::new);

impl<'a> Reader<'a> {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn bad(&self, key: &str, value: &dyn fmt::Display, problem: &str) -> ProfileError {
        ProfileError::BadValue {
            file: self.file.to_owned(),
            key: self.key(key),
            value: value.to_string(),
            problem: problem.to_owned(),
        }
    }

    fn missing(&self, key: &str) -> ProfileError {
        ProfileError::BadValue {
            file: self.file.to_owned(),
            key: self.key(key),
            value: "(missing)".to_owned(),
            problem: "required in a built-in profile".to_owned(),
        }
    }

    /// Fails on the first key not in `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), ProfileError> {
        match self.table.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ProfileError::UnknownKey {
                file: self.file.to_owned(),
                key: self.key(k),
                known: allowed.iter().map(|a| a.to_string()).collect(),
            }),
            None => Ok(()),
        }
    }

    fn table(&self, key: &str) -> Result<Reader<'a>, ProfileError> {
        let table = match self.table.get(key) {
            None => &*EMPTY,
            Some(toml::Value::Table(t)) => t,
            Some(v) => return Err(self.bad(key, v, "must be a table")),
        };
        Ok(Reader {
            file: self.file,
            prefix: format!("{}{key}.", self.prefix),
            table,
        })
    }

    fn get_str(&self, key: &str) -> Result<Option<String>, ProfileError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad(key, v, "must be a string")),
        }
    }

    fn get_bool(&self, key: &str) -> Result<Option<bool>, ProfileError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(key, v, "must be true or false")),
        }
    }

    fn get_u64(&self, key: &str) -> Result<Option<u64>, ProfileError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(v) => Err(self.bad(key, v, "must be a non-negative integer")),
        }
    }

    fn get_usize(&self, key: &str) -> Result<Option<usize>, ProfileError> {
        self.get_u64(key)?
            .map(|v| usize::try_from(v).map_err(|_| self.bad(key, &v, "too large")))
            .transpose()
    }

    fn get_u32(&self, key: &str) -> Result<Option<u32>, ProfileError> {
        self.get_u64(key)?
            .map(|v| u32::try_from(v).map_err(|_| self.bad(key, &v, "too large")))
            .transpose()
    }

    fn get_u8(&self, key: &str) -> Result<Option<u8>, ProfileError> {
        self.get_u64(key)?
            .map(|v| u8::try_from(v).map_err(|_| self.bad(key, &v, "too large")))
            .transpose()
    }

    fn get_enum<T: FromStr>(&self, key: &str) -> Result<Option<T>, ProfileError>
    where
        T::Err: fmt::Display,
    {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|e: T::Err| self.bad(key, &format!("\"{s}\""), &e.to_string())),
            Some(v) => Err(self.bad(key, v, "must be a string")),
        }
    }

    /// A size: an integer number of bytes, or a string such as `"64KiB"`.
    fn get_size(&self, key: &str) -> Result<Option<usize>, ProfileError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as usize)),
            Some(toml::Value::String(s)) => parse_size(s)
                .map(Some)
                .map_err(|e| self.bad(key, &format!("\"{s}\""), &e)),
            Some(v) => Err(self.bad(
                key,
                v,
                "must be a size: a number of bytes or a string like \"64KiB\"",
            )),
        }
    }
}

const UNITS: [(&str, usize); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Parses `"64KiB"`, `"1 GiB"`, `"512B"` or `"4096"`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = (&t[..split], t[split..].trim());
    let problem = || {
        "not a size (expected a whole number with an optional unit B, KiB, MiB, GiB or TiB, like \"64MiB\")".to_owned()
    };
    let n: usize = digits.parse().map_err(|_| problem())?;
    let mult = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, m)| *m)
            .ok_or_else(problem)?
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size does not fit in the address space".to_owned())
}

/// Formats a size in the largest unit that divides it exactly (`"64MiB"`).
pub fn format_size(bytes: usize) -> String {
    for (unit, mult) in UNITS {
        if bytes >= mult && bytes.is_multiple_of(mult) && mult > 1 {
            return format!("{}{unit}", bytes / mult);
        }
    }
    format!("{bytes}B")
}
