//! Misuse of DMA buffers must not compile: writing a buffer while its transfer is in flight, or
//! while the host holds it (shared region, not yet released), or giving DMA a non-`'static`
//! buffer. Each file in `tests/cfail/` is one misuse, with the compiler's error pinned in its
//! `.stderr`. The misuse files use the `std` link, so this runs with `--features std`.
#![cfg(feature = "std")]

#[test]
#[cfg_attr(miri, ignore = "trybuild runs rustc, which miri cannot")]
fn misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/cfail/*.rs");
}
