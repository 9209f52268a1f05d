//! Misuse of DMA buffers must not compile: writing a buffer (or a typed view of it) while its
//! transfer is in flight, or while the host holds it (shared region, not yet released), giving
//! DMA a non-`'static` buffer (or splitting a local array into buffers), or viewing DMA bytes as
//! a type not every bit pattern is a value of (`bool`). Each file in `tests/cfail/` is one
//! misuse, with the compiler's error pinned in its `.stderr`; each error names the fix. The
//! misuse files use the `std` link, so this runs with `--features std`.
#![cfg(feature = "std")]

#[test]
#[cfg_attr(miri, ignore = "trybuild runs rustc, which miri cannot")]
fn misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/cfail/*.rs");
}
