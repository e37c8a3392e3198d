//! Profiles: the built-ins load, round-trip, and every bad input is an error
//! that names the file, the key and the value.

use rtmem::{GcKind, Profile, ProfileError, TriggerKind, format_size, parse_size};
use rtmem_base::SpaceType;

fn parse(text: &str) -> Result<Profile, ProfileError> {
    Profile::parse("custom.toml", "custom", text)
}

/// Asserts the error names the file, the key and the value.
fn assert_names(text: &str, key: &str, value: &str) {
    let err = parse(text).expect_err(text).to_string();
    assert!(err.starts_with("custom.toml: "), "file missing: {err}");
    assert!(
        err.contains(&format!("`{key}`")),
        "key `{key}` missing: {err}"
    );
    assert!(err.contains(value), "value {value} missing: {err}");
}

#[test]
fn builtin_profiles_load_and_round_trip() {
    let builtin = Profile::builtin();
    let names: Vec<_> = builtin.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["balanced", "throughput", "small-footprint", "epsilon"]
    );
    for (name, description) in builtin {
        let p = Profile::from_name(name).unwrap();
        assert_eq!(p.name, name);
        assert!(!description.is_empty());
        let again = Profile::parse(&p.source, name, &p.to_toml()).unwrap();
        assert_eq!(again, p, "`show` output parses back to the same profile");
    }
    assert_eq!(Profile::default().name, "balanced");
    assert_eq!(Profile::from_name("epsilon").unwrap().gc, GcKind::Epsilon);
    let small = Profile::from_name("small-footprint").unwrap();
    assert_eq!(small.space(SpaceType::Object).max, 16 << 20);
    assert_eq!(small.trigger.kind, TriggerKind::Occupancy);
}

#[test]
fn a_profile_configures_the_spaces() {
    let p = Profile::from_name("small-footprint").unwrap();
    let config = p.spaces_config();
    assert_eq!(
        config.budgets[SpaceType::Object.index()],
        *p.space(SpaceType::Object)
    );
    assert_eq!(config.large_threshold, p.heap.large_threshold);
    let spaces = rtmem_spaces::Spaces::new(config).unwrap();
    assert_eq!(spaces.pools().capacity(SpaceType::Object), 16 << 20);
    assert_eq!(
        spaces.pools().limit(SpaceType::Frames),
        p.space(SpaceType::Frames).max
    );
}

#[test]
fn files_inherit_and_override() {
    let p = parse("inherits = \"throughput\"\ngc_workers = 1\n[spaces.code]\nmax = \"8MiB\"\n")
        .unwrap();
    let base = Profile::from_name("throughput").unwrap();
    assert_eq!(p.gc_workers, 1);
    assert_eq!(p.space(SpaceType::Code).max, 8 << 20);
    assert_eq!(
        p.space(SpaceType::Code).initial,
        base.space(SpaceType::Code).initial
    );
    assert_eq!(p.heap, base.heap);
    // Without `inherits`, the default profile is the base.
    let p = parse("verify = true").unwrap();
    assert!(p.verify);
    assert_eq!(p.heap, Profile::default().heap);
}

#[test]
fn from_file_reads_a_path_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("rtmem-profile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("mine.toml");
    std::fs::write(&good, "gc = \"epsilon\"\n").unwrap();
    let p = Profile::from_name_or_path(good.to_str().unwrap()).unwrap();
    assert_eq!((p.name.as_str(), p.gc), ("mine", GcKind::Epsilon));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[heap]\ntlab = \"3 bytes\"\n").unwrap();
    let err = Profile::from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.toml") && err.contains("`heap.tlab`") && err.contains("\"3 bytes\""),
        "{err}"
    );
    let err = Profile::from_file(dir.join("absent.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.toml: cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let err = Profile::from_name("fastest").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown profile `fastest` (known profiles: balanced, throughput, small-footprint, epsilon)"
    );
    assert_names("inherits = \"fastest\"", "inherits", "fastest");
}

#[test]
fn unknown_keys_are_named_with_what_is_allowed() {
    let err = parse("colour = 1").unwrap_err().to_string();
    assert!(
        err.contains("unknown key `colour`") && err.contains("gc_workers"),
        "{err}"
    );
    let err = parse("[heap]\nyuong = \"1MiB\"").unwrap_err().to_string();
    assert!(
        err.contains("`heap.yuong`") && err.contains("young"),
        "{err}"
    );
    let err = parse("[spaces.heap]\nmax = 1").unwrap_err().to_string();
    assert!(
        err.contains("`spaces.heap`") && err.contains("non-moving"),
        "{err}"
    );
    let err = parse("[spaces.code]\nlimit = 1").unwrap_err().to_string();
    assert!(err.contains("`spaces.code.limit`"), "{err}");
}

#[test]
fn wrong_types_name_key_and_value() {
    assert_names("gc = 3", "gc", "3");
    assert_names("gc_workers = \"two\"", "gc_workers", "\"two\"");
    assert_names("verify = \"yes\"", "verify", "\"yes\"");
    assert_names("stress_every = -5", "stress_every", "-5");
    assert_names("heap = 4", "heap", "4");
    assert_names("[heap]\nyoung = true", "heap.young", "true");
    assert_names("[trigger]\nkind = 1", "trigger.kind", "1");
}

#[test]
fn bad_enum_values_list_the_choices() {
    let err = parse("gc = \"g1\"").unwrap_err().to_string();
    assert!(
        err.contains("`gc` = \"g1\"") && err.contains("epsilon, stw, gen, gen-concurrent"),
        "{err}"
    );
    let err = parse("[trigger]\nkind = \"sometimes\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("occupancy, adaptive"), "{err}");
}

#[test]
fn out_of_range_values_name_key_and_value() {
    assert_names("gc_workers = 0", "gc_workers", "0");
    assert_names("gc_workers = 100000", "gc_workers", "100000");
    assert_names("[heap]\nyoung = \"1KiB\"", "heap.young", "\"1KiB\"");
    assert_names("[heap]\ntlab = 1000", "heap.tlab", "1000B");
    assert_names("[heap]\ncard_size = 500", "heap.card_size", "500");
    assert_names("[heap]\ncard_size = 8192", "heap.card_size", "8192");
    assert_names("[heap]\npromotion_age = 0", "heap.promotion_age", "0");
    assert_names("[heap]\npromotion_age = 300", "heap.promotion_age", "300");
    assert_names(
        "[heap]\nlarge_threshold = \"4MiB\"",
        "heap.large_threshold",
        "\"4MiB\"",
    );
    assert_names(
        "[trigger]\noccupancy_percent = 101",
        "trigger.occupancy_percent",
        "101",
    );
    assert_names(
        "[trigger]\ngrowth_percent = 5",
        "trigger.growth_percent",
        "5",
    );
    assert_names(
        "[spaces.object]\ngrowth_percent = 5000",
        "spaces.object.growth_percent",
        "5000",
    );
    assert_names(
        "[spaces.code]\nmax = \"12XB\"",
        "spaces.code.max",
        "\"12XB\"",
    );
    assert_names(
        "[spaces.code]\nmax = \"99999999999TiB\"",
        "spaces.code.max",
        "99999999999TiB",
    );
}

#[test]
fn inconsistent_sizes_name_both_keys() {
    let err = parse("[heap]\nyoung = \"4GiB\"").unwrap_err().to_string();
    assert!(
        err.contains("`heap.young` = \"4GiB\"") && err.contains("spaces.object.max"),
        "{err}"
    );
    let err = parse("[heap]\ntlab = \"32MiB\"\nyoung = \"16MiB\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`heap.tlab` = \"32MiB\"") && err.contains("heap.young"),
        "{err}"
    );
    let err = parse("[spaces.code]\ninitial = \"2MiB\"\nmax = \"1MiB\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`spaces.code.initial` = \"2MiB\"")
            && err.contains("spaces.code.max = \"1MiB\""),
        "{err}"
    );
    let err = parse("[trigger]\nmin_heap = \"3GiB\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`trigger.min_heap`") && err.contains("spaces.object.max"),
        "{err}"
    );
}

#[test]
fn syntax_errors_name_the_file() {
    let err = parse("gc = ").unwrap_err();
    assert!(matches!(err, ProfileError::Syntax { .. }));
    assert!(
        err.to_string().starts_with("custom.toml: not valid TOML"),
        "{err}"
    );
}

#[test]
fn sizes_parse_and_format() {
    assert_eq!(parse_size("64KiB"), Ok(64 << 10));
    assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("7B"), Ok(7));
    assert!(parse_size("1.5MiB").is_err());
    assert!(parse_size("MiB").is_err());
    assert_eq!(format_size(64 << 20), "64MiB");
    assert_eq!(format_size(1536), "1536B");
    assert_eq!(format_size(3 << 30), "3GiB");
    assert_eq!(format_size(0), "0B");
}
