//! `regex` as far as carve's dependencies use it (`Regex::new`, `is_match`, `replace_all`,
//! `RegexBuilder`, captures), backed by regex-lite. See Cargo.toml for why.

pub use regex_lite::*;

#[cfg(test)]
mod tests {
    use super::Regex;

    /// The patterns carve's dependencies compile, with what they must (not) match.
    #[test]
    fn the_dependents_patterns_behave_as_with_regex() {
        // oci-spec 0.10, process.execCPUAffinity.
        let cpus = Regex::new(r"^(\d+(-\d+)?)(,\d+(-\d+)?)*$").unwrap();
        for ok in ["0", "0-3", "1,3-5,7"] {
            assert!(cpus.is_match(ok), "{ok}");
        }
        for bad in ["", "x", "1,", "1-", "-1", "1 2", "0-3,a"] {
            assert!(!cpus.is_match(bad), "{bad}");
        }
        // prost-build 0.14, doc comments.
        let url = Regex::new(r"https?://[^\s)]+").unwrap();
        assert_eq!(url.replace_all("see https://x.y/z) ok", r"<$0>"), "see <https://x.y/z>) ok");
        let br = Regex::new(r"(^|[^\]\\])\[(([^\]]*[^\\])?)\]([^(\[]|$)").unwrap();
        assert_eq!(br.replace_all("a [b] c", r"$1\[$2\]$4"), r"a \[b\] c");
    }
}
