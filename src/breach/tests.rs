#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, RngCore, SeedableRng};

use super::builder::{estimate_items, for_each_line, LineItem};
use super::cli::{query, run_build, BuildArgs, QueryArgs, EXIT_ERROR, EXIT_FOUND, EXIT_NOT_FOUND};
use super::*;

fn sha1_hex_upper(pw: &str) -> String {
    hex::encode_upper(password_sha1(pw.as_bytes()))
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn write_gz(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let f = std::fs::File::create(&p).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(content).unwrap();
    gz.finish().unwrap();
    p
}

fn build(inputs: Vec<PathBuf>, out: &Path, format: Format) -> cli::BuildReport {
    let mut args = BuildArgs::new(inputs, out.to_path_buf());
    args.format = format;
    args.quiet = true;
    run_build(&args).unwrap()
}

#[test]
fn known_vectors() {
    assert_eq!(hex::encode_upper(password_sha1(b"password")), "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8");
    assert_eq!(normalise_account("  Alice@Example.COM \t"), "alice@example.com");
    assert_eq!(normalise_account(" ÉLODIE@exemple.fr"), "élodie@exemple.fr");
    assert_eq!(pair_key("alice@example.com", b"hunter2"), password_sha1(b"alice@example.com\0hunter2"));
    let h = "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8";
    assert_eq!(decode_sha1_hex(h.as_bytes()), decode_sha1_hex(h.to_uppercase().as_bytes()));
    assert_eq!(decode_sha1_hex(h.as_bytes()), Some(password_sha1(b"password")));
    assert_eq!(decode_sha1_hex(&h.as_bytes()[..39]), None);
    let mut bad = h.as_bytes().to_vec();
    bad[7] = b'g';
    assert_eq!(decode_sha1_hex(&bad), None);
}

#[test]
fn sha1_list_hits_with_crlf_uppercase_lowercase_and_min_count() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}:3730471\r\n{}:10\r\n{}:5\n{}\n{}:1",
        sha1_hex_upper("123456"),
        sha1_hex_upper("password").to_lowercase(),
        sha1_hex_upper("qwerty"),
        sha1_hex_upper("letmein"),  // bare hash: count 1
        sha1_hex_upper("rare-one"), // last line without newline
    );
    let input = write_file(dir.path(), "pwned.txt", text.as_bytes());
    let out = dir.path().join("f.bloom");
    let r = build(vec![input.clone()], &out, Format::Sha1);
    assert_eq!((r.lines, r.keys, r.bad_lines), (5, 5, 0));
    assert_eq!(r.expected_items, 5);
    let f = BreachFilter::load(&out).unwrap();
    assert_eq!(f.kind(), FilterKind::Password);
    assert_eq!(f.items(), 5);
    assert_eq!(f.fp_rate(), 0.001);
    for pw in ["123456", "password", "qwerty", "letmein", "rare-one"] {
        assert!(f.contains_password(pw.as_bytes()), "{pw}");
        assert!(f.contains_sha1(&password_sha1(pw.as_bytes())));
    }
    assert!(!f.contains_password(b"correct horse battery staple"));
    assert!(!f.contains_pair("123456", b""));

    // --min-count 6 keeps only the first two; the first pass sizes for them.
    let mut args = BuildArgs::new(vec![input], out.clone());
    args.min_count = 6;
    args.quiet = true;
    let r = run_build(&args).unwrap();
    assert_eq!((r.keys, r.skipped_min_count, r.expected_items), (2, 3, 2));
    let f = BreachFilter::load(&out).unwrap();
    assert!(f.contains_password(b"123456") && f.contains_password(b"password"));
    assert!(!f.contains_password(b"qwerty"));
}

#[test]
fn plain_and_gz_inputs_and_multiple_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write_file(dir.path(), "common.txt", b"dragon\r\nmonkey\nPass Word \n");
    let gz_plain = write_gz(dir.path(), "more.txt.gz", b"shadow\nsunshine\n");
    // gzip detected by magic even without the extension
    let gz_noext = write_gz(dir.path(), "more-noext", b"trustno1\n");
    let out = dir.path().join("p.bloom");
    let r = build(vec![plain, gz_plain, gz_noext], &out, Format::Plain);
    assert_eq!((r.lines, r.keys, r.bad_lines), (6, 6, 0));
    assert_eq!(r.expected_items_source, ItemCountSource::Counted);
    assert_eq!(r.expected_items, 6);
    let f = BreachFilter::load(&out).unwrap();
    for pw in ["dragon", "monkey", "Pass Word ", "shadow", "sunshine", "trustno1"] {
        assert!(f.contains_password(pw.as_bytes()), "{pw}");
    }
    assert!(!f.contains_password(b"Pass Word"));
    assert!(!f.contains_password(b"Dragon"));
    assert!(f.contains_password_any_case(b"DRAGON"));
    assert!(!f.contains_password_any_case(b"DRAGONS"));

    let gz_sha1 = write_gz(
        dir.path(),
        "pwned.txt.gz",
        format!("{}:2\r\n{}:9\r\n", sha1_hex_upper("abc123"), sha1_hex_upper("iloveyou")).as_bytes(),
    );
    let out2 = dir.path().join("s.bloom");
    build(vec![gz_sha1], &out2, Format::Sha1);
    let f = BreachFilter::load(&out2).unwrap();
    assert!(f.contains_password(b"abc123") && f.contains_password(b"iloveyou"));
    assert!(!f.contains_password(b"abc1234"));
}

#[test]
fn bad_lines_are_counted_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let good = sha1_hex_upper("good");
    let ntlm = "8846F7EAEE8FB117AD06BDD830B7586C:10";
    let text =
        format!("{good}:1\n\n{ntlm}\n{}:1\n{good}:x\n{}Z:3\n{good}:\n{good}:7\nshort:1\n", &good[..39], &good[..39]);
    let input = write_file(dir.path(), "mixed.txt", text.as_bytes());
    let out = dir.path().join("m.bloom");
    let r = build(vec![input.clone()], &out, Format::Sha1);
    assert_eq!(r.lines, 9);
    assert_eq!(r.keys, 2);
    assert_eq!(r.items, 2); // the same hash twice: counted twice...
    assert_eq!(r.estimated_distinct, 1); // ...but one key
    assert_eq!(r.bad_lines, 7);
    assert_eq!(r.bad_examples.len(), 5);
    let got: Vec<(u64, BadReason)> = r.bad_examples.iter().map(|b| (b.line, b.reason.clone())).collect();
    assert_eq!(
        got,
        vec![
            (2, BadReason::EmptyLine),
            (3, BadReason::HashLength(32)),
            (4, BadReason::HashLength(39)),
            (5, BadReason::BadCount),
            (6, BadReason::NotHex),
        ]
    );
    let shown = r.bad_examples[1].to_string();
    assert!(shown.starts_with(&format!("{}:3: ", input.display())), "{shown}");
    assert!(shown.contains("NTLM"), "{shown}");
    assert!(r.to_string().contains("and 2 more bad lines"));

    // --strict refuses and writes nothing
    let out_strict = dir.path().join("strict.bloom");
    let mut args = BuildArgs::new(vec![input], out_strict.clone());
    args.strict = true;
    args.quiet = true;
    let err = run_build(&args).unwrap_err().to_string();
    assert!(err.contains("7 bad lines"), "{err}");
    assert!(!out_strict.exists());
}

#[test]
fn pair_lines_bad_and_good() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_file(
        dir.path(),
        "combo.txt",
        b"Alice@Example.com :pa:ss\r\nno-separator\n:nopass-account\nbob@example.com:\nbob@example.com:hunter2\n",
    );
    let out = dir.path().join("pairs.bloom");
    let r = build(vec![input], &out, Format::Pairs);
    assert_eq!((r.keys, r.bad_lines), (2, 3));
    let reasons: Vec<BadReason> = r.bad_examples.iter().map(|b| b.reason.clone()).collect();
    assert_eq!(reasons, vec![BadReason::MissingSeparator, BadReason::EmptyAccount, BadReason::EmptyPassword]);
    let f = BreachFilter::load_kind(&out, FilterKind::Pair).unwrap();
    assert_eq!(f.kind(), FilterKind::Pair);
    // split at the first ':'; the account is normalised
    assert!(f.contains_pair(&normalise_account("Alice@Example.com "), b"pa:ss"));
    assert!(f.contains_pair("alice@example.com", b"pa:ss"));
    assert!(f.contains_pair("bob@example.com", b"hunter2"));
    // another password, another account, or a password-only query: no match
    assert!(!f.contains_pair("alice@example.com", b"pa:sS"));
    assert!(!f.contains_pair("alice@example.com", b"hunter2"));
    assert!(!f.contains_pair("bob@example.com", b"pa:ss"));
    assert!(!f.contains_pair("carol@example.com", b"hunter2"));
    assert!(!f.contains_password(b"hunter2"));
    assert!(!f.contains_key(&password_sha1(b"hunter2")));

    match BreachFilter::load_kind(&out, FilterKind::Password) {
        Err(BreachError::WrongKind { expected, found, .. }) => {
            assert_eq!((expected, found), (FilterKind::Password, FilterKind::Pair));
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
}

#[test]
fn false_positive_rate_is_near_target() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut b = FilterBuilder::new(FilterKind::Password, 100_000, 0.01).unwrap();
    for _ in 0..100_000 {
        let mut k = [0u8; 20];
        rng.fill_bytes(&mut k);
        b.insert_key(&k);
    }
    let f = b.finish().unwrap();
    let probes = 1_000_000u32;
    let mut hits = 0u32;
    for _ in 0..probes {
        let mut k = [0u8; 20];
        rng.fill_bytes(&mut k);
        if f.contains_sha1(&k) {
            hits += 1;
        }
    }
    let rate = f64::from(hits) / f64::from(probes);
    assert!(rate < 0.02 && rate > 0.005, "measured fp rate {rate}");
    let est = f.estimated_fp_rate();
    assert!(est < 0.02 && est > 0.005, "estimated fp rate {est}");
    let d = f.estimated_distinct_items();
    assert!((99_000..101_000).contains(&d), "estimated distinct {d}");
}

fn small_filter_bytes() -> Vec<u8> {
    let mut b = FilterBuilder::new(FilterKind::Password, 1000, 0.001).unwrap();
    b.insert_password(b"hunter2");
    b.finish().unwrap().to_bytes()
}

#[test]
fn round_trip_and_header_fields() {
    let bytes = small_filter_bytes();
    assert_eq!(&bytes[..8], b"SGBREACH");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    assert_eq!(bytes[10], 1);
    let payload_len = u32::from_le_bytes(bytes[35..39].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 39 + payload_len + 4);
    let f = BreachFilter::from_bytes(&bytes).unwrap();
    assert!(f.contains_password(b"hunter2"));
    assert_eq!(f.items(), 1);
    assert_eq!(f.hash_functions(), 10);
    assert_eq!(f.file_size(), bytes.len() as u64);
    assert_eq!(f.to_bytes(), bytes);
    // Same seed → same bitmap.
    let seed = [9u8; 32];
    let mk = || {
        let mut b = FilterBuilder::with_seed(FilterKind::Password, 50, 0.01, &seed).unwrap();
        b.insert_password(b"x");
        b.finish().unwrap().to_bytes()
    };
    assert_eq!(mk()[39..], mk()[39..]);
}

#[test]
fn damaged_files_are_refused_with_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_filter_bytes();
    let save = |name: &str, b: &[u8]| write_file(dir.path(), name, b);

    let p = save("truncated.bloom", &bytes[..bytes.len() - 100]);
    let e = BreachFilter::load(&p).unwrap_err();
    assert!(matches!(e, BreachError::Truncated { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("truncated.bloom") && msg.contains("stuffgate breach build"), "{msg}");
    assert!(matches!(BreachFilter::from_bytes(&bytes[..20]), Err(BreachError::Truncated { .. })));
    assert!(matches!(BreachFilter::from_bytes(&bytes[..5]), Err(BreachError::Truncated { .. })));
    let p = save("empty.bloom", b"");
    assert!(matches!(BreachFilter::load(&p), Err(BreachError::Truncated { .. })));

    let mut flipped = bytes.clone();
    let mid = 39 + 45 + 3;
    flipped[mid] ^= 0x10;
    let p = save("flipped.bloom", &flipped);
    let e = BreachFilter::load(&p).unwrap_err();
    assert!(matches!(e, BreachError::ChecksumMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("corrupted"));
    assert!(matches!(BreachFilter::from_bytes(&flipped), Err(BreachError::ChecksumMismatch { .. })));
    // A flipped bit in the header's item count is caught by the CRC too.
    let mut flipped = bytes.clone();
    flipped[12] ^= 1;
    assert!(matches!(BreachFilter::from_bytes(&flipped), Err(BreachError::ChecksumMismatch { .. })));

    let mut magic = bytes.clone();
    magic[..8].copy_from_slice(b"NOTBLOOM");
    let p = save("magic.bloom", &magic);
    let e = BreachFilter::load(&p).unwrap_err();
    assert!(matches!(e, BreachError::BadMagic { .. }), "{e:?}");
    let p = save("text.txt", b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:1\n");
    assert!(matches!(BreachFilter::load(&p), Err(BreachError::BadMagic { .. })));

    let mut version = bytes.clone();
    version[8] = 2;
    let e = BreachFilter::from_bytes(&version).unwrap_err();
    assert!(matches!(e, BreachError::UnsupportedVersion { found: 2, supported: 1, .. }), "{e:?}");

    let mut kind = bytes.clone();
    kind[10] = 9;
    assert!(matches!(BreachFilter::from_bytes(&kind), Err(BreachError::UnknownKind { found: 9, .. })));

    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(BreachFilter::from_bytes(&longer), Err(BreachError::Corrupt { .. })));

    let e = BreachFilter::load(&dir.path().join("missing.bloom")).unwrap_err();
    assert!(matches!(e, BreachError::Read { .. }), "{e:?}");
}

#[test]
fn builder_parameter_errors() {
    assert!(matches!(FilterBuilder::new(FilterKind::Password, 10, 0.0), Err(BreachError::InvalidParameters(_))));
    assert!(matches!(FilterBuilder::new(FilterKind::Password, 10, 1.0), Err(BreachError::InvalidParameters(_))));
    assert!(matches!(FilterBuilder::new(FilterKind::Password, 10, f64::NAN), Err(BreachError::InvalidParameters(_))));
    // 1e10 items at 0.1 % need ~18 GB: over the format's u32 payload length.
    assert!(matches!(
        FilterBuilder::new(FilterKind::Password, 10_000_000_000, 0.001),
        Err(BreachError::TooLarge { .. })
    ));
    // 1B items at 0.1 % fit (≈ 1.8 GB) — size check only, nothing allocated.
    let b = FilterBuilder::payload_bytes(1_000_000_000, 0.001).unwrap();
    assert!(b < 1_900_000_000 && b > 1_700_000_000, "{b}");
    // Zero expected items still makes a (tiny) valid filter.
    let f = FilterBuilder::new(FilterKind::Password, 0, 0.01).unwrap().finish().unwrap();
    assert!(!f.contains_password(b"x"));
    BreachFilter::from_bytes(&f.to_bytes()).unwrap();
}

#[test]
fn line_splitter_edge_cases() {
    let collect = |data: &[u8]| {
        let mut v: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
        for_each_line(data, |n, item| {
            v.push((
                n,
                match item {
                    LineItem::Line(l) => Some(l.to_vec()),
                    LineItem::TooLong => None,
                },
            ));
            true
        })
        .unwrap();
        v
    };
    assert!(collect(b"").is_empty());
    assert_eq!(collect(b"a\n"), vec![(1, Some(b"a".to_vec()))]);
    assert_eq!(collect(b"a\n\nb"), vec![(1, Some(b"a".to_vec())), (2, Some(vec![])), (3, Some(b"b".to_vec()))]);
    let summary = |v: Vec<(u64, Option<Vec<u8>>)>| -> Vec<(u64, Option<usize>)> {
        v.into_iter().map(|(n, l)| (n, l.map(|l| l.len()))).collect()
    };
    let max = super::builder::MAX_LINE;
    for len in [max - 1, max, max + 1, 3 * max, (1 << 20) + 5, 3 << 20] {
        let mut big = vec![b'x'; len];
        big.extend_from_slice(b"\nok\n");
        let want_first = if len > max { None } else { Some(len) };
        assert_eq!(summary(collect(&big)), vec![(1, want_first), (2, Some(2))], "len {len}");
        // without the final newline too
        big.truncate(len);
        assert_eq!(summary(collect(&big)), vec![(1, want_first)], "len {len}, no newline");
    }
    // Lines spanning the 1 MiB read buffer boundary are reassembled.
    let mut data = Vec::new();
    let mut n = 0u64;
    while data.len() < 3 << 20 {
        data.extend_from_slice(format!("line-{n}\n").as_bytes());
        n += 1;
    }
    let got = collect(&data);
    assert_eq!(got.len() as u64, n);
    assert_eq!(got[(n - 1) as usize].1.as_deref(), Some(format!("line-{}", n - 1).as_bytes()));
}

#[test]
fn sizing_pass_counts_lines() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicU64::new(0);
    let p = write_file(dir.path(), "a.txt", b"a\nb\nc");
    assert_eq!(estimate_items(&p, Format::Plain, 1, &counter).unwrap(), (3, ItemCountSource::Counted));
    let mut big = Vec::new();
    for i in 0..100_000u32 {
        big.extend_from_slice(format!("{}:{}\n", sha1_hex_upper(&i.to_string()), i % 10).as_bytes());
    }
    let p = write_file(dir.path(), "b.txt", &big);
    assert_eq!(estimate_items(&p, Format::Sha1, 1, &counter).unwrap().0, 100_000);
    assert_eq!(estimate_items(&p, Format::Sha1, 5, &counter).unwrap().0, 50_000);
    let p = write_gz(dir.path(), "b.txt.gz", &big);
    assert_eq!(estimate_items(&p, Format::Sha1, 1, &counter).unwrap(), (100_000, ItemCountSource::Counted));
    assert!(estimate_items(Path::new("-"), Format::Sha1, 1, &counter).is_err());
}

#[test]
fn build_errors_are_helpful() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_file(dir.path(), "plain.txt", b"hello\nworld\n");
    // sha1 format on a plain list: nothing accepted, nothing written
    let out = dir.path().join("x.bloom");
    let mut args = BuildArgs::new(vec![input.clone()], out.clone());
    args.quiet = true;
    let e = run_build(&args).unwrap_err().to_string();
    assert!(e.contains("check --format"), "{e}");
    assert!(!out.exists());
    // unwritable output directory is reported before building
    let args = BuildArgs { quiet: true, ..BuildArgs::new(vec![input.clone()], dir.path().join("no/such/dir/x.bloom")) };
    let e = format!("{:#}", run_build(&args).unwrap_err());
    assert!(e.contains("directory exists"), "{e}");
    // missing input
    let args = BuildArgs {
        quiet: true,
        format: Format::Plain,
        ..BuildArgs::new(vec![dir.path().join("missing.txt")], out.clone())
    };
    let e = format!("{:#}", run_build(&args).unwrap_err());
    assert!(e.contains("missing.txt"), "{e}");
    // bad seed
    let args = BuildArgs {
        quiet: true,
        format: Format::Plain,
        seed: Some("abc".into()),
        ..BuildArgs::new(vec![input.clone()], out.clone())
    };
    assert!(run_build(&args).unwrap_err().to_string().contains("--seed"));
    // under-sized filter still builds, with a high estimated fp rate reported
    let mut many = Vec::new();
    for i in 0..20_000 {
        many.extend_from_slice(format!("pw{i}\n").as_bytes());
    }
    let many = write_file(dir.path(), "many.txt", &many);
    let args = BuildArgs {
        quiet: true,
        format: Format::Plain,
        expected_items: Some(1000),
        ..BuildArgs::new(vec![many], out.clone())
    };
    let r = run_build(&args).unwrap();
    assert_eq!(r.expected_items_source, ItemCountSource::Given);
    assert!(r.estimated_fp_rate > 0.1, "{}", r.estimated_fp_rate);
}

fn run_q(args: &QueryArgs, stdin: &[u8]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = stdin;
    let code = query(args, &mut input, &mut out, &mut err);
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[test]
fn query_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pw_list = write_file(dir.path(), "pw.txt", b"hunter2\nletmein\n");
    let pw_filter = dir.path().join("pw.bloom");
    build(vec![pw_list], &pw_filter, Format::Plain);
    let pair_list = write_file(dir.path(), "pairs.txt", b"alice@example.com:hunter2\n");
    let pair_filter = dir.path().join("pairs.bloom");
    build(vec![pair_list], &pair_filter, Format::Pairs);

    let q = |filter: &Path, sha1: Option<&str>, account: Option<&str>| QueryArgs {
        filter: filter.to_path_buf(),
        sha1: sha1.map(str::to_owned),
        account: account.map(str::to_owned),
        any_case: false,
    };
    let a = q(&pw_filter, None, None);
    let (code, out, _) = run_q(&a, b"hunter2\n");
    assert_eq!(code, EXIT_FOUND);
    assert!(out.starts_with("found"), "{out}");
    assert_eq!(run_q(&a, b"letmein\r\n").0, EXIT_FOUND);
    assert_eq!(run_q(&a, b"letmein").0, EXIT_FOUND);
    assert_eq!(run_q(&a, b"hunter3\n").0, EXIT_NOT_FOUND);
    assert_eq!(run_q(&a, b"HUNTER2\n").0, EXIT_NOT_FOUND);
    let any = QueryArgs { any_case: true, ..a.clone() };
    assert_eq!(run_q(&any, b"HUNTER2\n").0, EXIT_FOUND);
    assert_eq!(run_q(&any, b"HUNTER3\n").0, EXIT_NOT_FOUND);
    let (code, _, err) = run_q(&a, b"");
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("no password"), "{err}");
    assert_eq!(run_q(&a, b"\n").0, EXIT_ERROR);

    let hx = hex::encode(password_sha1(b"hunter2"));
    assert_eq!(run_q(&q(&pw_filter, Some(&hx), None), b"").0, EXIT_FOUND);
    assert_eq!(run_q(&q(&pw_filter, Some(&hx.to_uppercase()), None), b"").0, EXIT_FOUND);
    let other = hex::encode(password_sha1(b"nope"));
    assert_eq!(run_q(&q(&pw_filter, Some(&other), None), b"").0, EXIT_NOT_FOUND);
    let (code, _, err) = run_q(&q(&pw_filter, Some("1234"), None), b"");
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("40 hex digits"), "{err}");
    let (code, _, err) = run_q(&q(&pw_filter, None, Some("alice@example.com")), b"hunter2\n");
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("password filter"), "{err}");

    let p = q(&pair_filter, None, Some(" Alice@Example.com"));
    assert_eq!(run_q(&p, b"hunter2\n").0, EXIT_FOUND);
    assert_eq!(run_q(&p, b"hunter3\n").0, EXIT_NOT_FOUND);
    assert_eq!(run_q(&q(&pair_filter, None, Some("bob@example.com")), b"hunter2\n").0, EXIT_NOT_FOUND);
    let (code, _, err) = run_q(&q(&pair_filter, None, None), b"hunter2\n");
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("--account"), "{err}");

    let (code, _, err) = run_q(&q(&dir.path().join("missing.bloom"), None, None), b"x\n");
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("missing.bloom"), "{err}");
    let junk = write_file(dir.path(), "junk.bloom", b"junk junk junk junk junk junk junk junk junk");
    let (code, _, err) = run_q(&q(&junk, None, None), b"x\n");
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("not a stuffgate breach filter"), "{err}");
}

#[test]
fn in_memory_stream_build() {
    // The path the benchmark uses: build_filter over in-memory sources.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut text = Vec::new();
    let mut first = [0u8; 20];
    for i in 0..20_000 {
        let mut k = [0u8; 20];
        rng.fill_bytes(&mut k);
        if i == 0 {
            first = k;
        }
        text.extend_from_slice(format!("{}:{}\r\n", hex::encode_upper(k), rng.random_range(1..1000)).as_bytes());
    }
    let counters = IngestCounters::default();
    let mut b = FilterBuilder::new(FilterKind::Password, 20_000, 0.001).unwrap();
    let half = text.len() / 2;
    let split = half + text[half..].iter().position(|&c| c == b'\n').unwrap() + 1;
    let stats = build_filter(
        vec![Source::new("a", &text[..split]), Source::new("b", &text[split..])],
        Format::Sha1,
        1,
        &mut b,
        &counters,
    )
    .unwrap();
    assert_eq!((stats.lines, stats.keys, stats.bad_lines), (20_000, 20_000, 0));
    assert_eq!(counters.lines.load(std::sync::atomic::Ordering::Relaxed), 20_000);
    let f = b.finish().unwrap();
    assert!(f.contains_sha1(&first));
    // Wrong kind for the format is refused.
    let mut pairs = FilterBuilder::new(FilterKind::Pair, 10, 0.01).unwrap();
    assert!(build_filter(vec![], Format::Sha1, 1, &mut pairs, &counters).is_err());
}

#[test]
fn fast_insert_matches_the_bloom_crate() {
    // The builder sets bits itself; they must be exactly where
    // bloomfilter's own `set` puts them, or lookups would miss.
    struct Raw([u8; 20]);
    impl std::hash::Hash for Raw {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            state.write(&self.0);
        }
    }
    let seed = [0x5a; 32];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (n, fp) in [(1usize, 0.5), (1000, 0.01), (5000, 0.001), (3000, 0.3)] {
        let mut reference: bloomfilter::Bloom<Raw> =
            bloomfilter::Bloom::new_for_fp_rate_with_seed(n.max(1024), fp, &seed).unwrap();
        let mut b = FilterBuilder::with_seed(FilterKind::Password, n as u64, fp, &seed).unwrap();
        let keys: Vec<[u8; 20]> = (0..n)
            .map(|_| {
                let mut k = [0u8; 20];
                rng.fill_bytes(&mut k);
                k
            })
            .collect();
        for k in &keys {
            reference.set(&Raw(*k));
        }
        // mix the single and bulk paths
        let (a, rest) = keys.split_at(n / 3);
        for k in a {
            b.insert_key(k);
        }
        b.insert_keys(rest);
        assert_eq!(b.inserted(), n as u64);
        let f = b.finish().unwrap();
        assert_eq!(f.to_bytes()[39..f.to_bytes().len() - 4], *reference.as_slice(), "n={n} fp={fp}");
        assert!(keys.iter().all(|k| f.contains_key(k)));
    }
}

#[test]
fn shipped_common_password_filter() {
    // policies/data/common-passwords.bloom: Django's list, built by
    // policies/data/build-common-passwords.sh.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data/common-passwords.bloom");
    let f = BreachFilter::load_kind(&path, FilterKind::Password).unwrap();
    // the embedded copy is the same file
    assert_eq!(std::fs::read(&path).unwrap(), COMMON_PASSWORDS_BLOOM);
    let embedded = common_passwords().unwrap();
    assert!(embedded.contains_password_any_case(b"Dragon"));
    assert_eq!(f.items(), 19_640);
    assert_eq!(f.fp_rate(), 0.001);
    for pw in ["123456", "password", "qwerty", "iloveyou", "trustno1", "letmein"] {
        assert!(f.contains_password(pw.as_bytes()), "{pw}");
    }
    assert!(f.contains_password_any_case(b"PassWord"));
    assert!(!f.contains_password(b"PassWord"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut fp = 0;
    for _ in 0..100_000 {
        let pw = format!("{:032x}", rng.random::<u128>());
        fp += u32::from(f.contains_password(pw.as_bytes()));
    }
    assert!(fp < 300, "{fp} false positives in 100k");
}
