//! v2 hugetlb: hugetlb.<size>.max; usage from .current and .events.

use crate::fs;
use crate::stats::{Hugetlb, Stats};
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    for h in res.hugepage_limits().iter().flatten() {
        let size = crate::hugetlb_size(h.page_size())?;
        fs::write(dir, &format!("hugetlb.{size}.max"), &h.limit().to_string())?;
    }
    Ok(())
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    for size in crate::hugepage_sizes() {
        if let Some(usage) = fs::read_u64_opt(dir, &format!("hugetlb.{size}.current"))? {
            let failcnt = fs::read_opt(dir, &format!("hugetlb.{size}.events"))?
                .and_then(|s| {
                    fs::flat_keyed(&s)
                        .find(|(k, _)| *k == "max")
                        .map(|(_, v)| v)
                })
                .unwrap_or(0);
            st.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage,
                    max: 0,
                    failcnt,
                },
            );
        }
    }
    Ok(())
}
