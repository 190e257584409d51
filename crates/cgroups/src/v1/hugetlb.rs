//! v1 hugetlb: hugetlb.<size>.limit_in_bytes.

use crate::fs;
use crate::stats::{Hugetlb, Stats};
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    for h in res.hugepage_limits().iter().flatten() {
        let size = crate::hugetlb_size(h.page_size())?;
        fs::write(
            dir,
            &format!("hugetlb.{size}.limit_in_bytes"),
            &h.limit().to_string(),
        )?;
    }
    Ok(())
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    for size in crate::hugepage_sizes() {
        let f = |n: &str| fs::read_u64_opt(dir, &format!("hugetlb.{size}.{n}"));
        if let Some(usage) = f("usage_in_bytes")? {
            st.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage,
                    max: f("max_usage_in_bytes")?.unwrap_or(0),
                    failcnt: f("failcnt")?.unwrap_or(0),
                },
            );
        }
    }
    Ok(())
}
