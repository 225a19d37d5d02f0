//! Which worker holds which file of a table: balanced by bytes, and stable, so a refresh leaves
//! every unchanged file where it is (its worker keeps the data without reading it again).

use std::collections::BTreeMap;

/// Assigns `files` (URI, bytes) to `workers`: a file keeps the worker `previous` gave it while
/// that worker is still one of `workers`; the others go, largest first, each to the worker with
/// the fewest bytes so far (ties: the first in `workers`). With `rebalance` (a worker joined or
/// came back), files then move from the heaviest worker to the lightest while a move narrows
/// the gap between them. Answers, per worker in the order of `workers`, its files in the order
/// of `files`.
pub fn assign(
    files: &[(String, u64)],
    previous: &BTreeMap<String, String>,
    workers: &[String],
    rebalance: bool,
) -> Vec<Vec<String>> {
    let mut load: Vec<u64> = vec![0; workers.len()];
    let mut owner: Vec<Option<usize>> = vec![None; files.len()];
    for (i, (uri, size)) in files.iter().enumerate() {
        if let Some(w) = previous
            .get(uri)
            .and_then(|w| workers.iter().position(|x| x == w))
        {
            owner[i] = Some(w);
            load[w] += size;
        }
    }
    let mut new: Vec<usize> = (0..files.len()).filter(|&i| owner[i].is_none()).collect();
    new.sort_by(|&a, &b| files[b].1.cmp(&files[a].1).then(a.cmp(&b)));
    for i in new {
        let Some(w) = (0..workers.len()).min_by_key(|&w| (load[w], w)) else {
            break;
        };
        owner[i] = Some(w);
        load[w] += files[i].1;
    }
    while rebalance && workers.len() > 1 {
        let heavy = (0..workers.len()).max_by_key(|&w| (load[w], std::cmp::Reverse(w)));
        let light = (0..workers.len()).min_by_key(|&w| (load[w], w));
        let (Some(heavy), Some(light)) = (heavy, light) else {
            break;
        };
        let gap = load[heavy] - load[light];
        // The largest file of the heaviest whose move narrows the gap.
        let Some(i) = (0..files.len())
            .filter(|&i| owner[i] == Some(heavy) && files[i].1 > 0 && files[i].1 < gap)
            .max_by_key(|&i| (files[i].1, std::cmp::Reverse(i)))
        else {
            break;
        };
        owner[i] = Some(light);
        load[heavy] -= files[i].1;
        load[light] += files[i].1;
    }
    let mut out: Vec<Vec<String>> = vec![Vec::new(); workers.len()];
    for (i, w) in owner.into_iter().enumerate() {
        if let Some(w) = w {
            out[w].push(files[i].0.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[(&str, u64)]) -> Vec<(String, u64)> {
        sizes.iter().map(|(u, s)| (u.to_string(), *s)).collect()
    }

    fn workers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://w{i}")).collect()
    }

    #[test]
    fn new_files_balance_by_bytes_largest_first() {
        let f = files(&[("a", 10), ("b", 50), ("c", 30), ("d", 20), ("e", 5)]);
        let got = assign(&f, &BTreeMap::new(), &workers(2), false);
        // b (50) -> w0; c (30) -> w1; d (20) -> w1 (30 < 50); a (10) -> w0 (50 = 50: the
        // first); e (5) -> w1 (50 < 60).
        assert_eq!(got, vec![vec!["a", "b"], vec!["c", "d", "e"]]);
        let bytes = |fs: &Vec<String>| -> u64 {
            fs.iter()
                .map(|u| f.iter().find(|(x, _)| x == u).unwrap().1)
                .sum()
        };
        assert_eq!((bytes(&got[0]), bytes(&got[1])), (60, 55));
    }

    #[test]
    fn files_stay_where_they_were_and_new_ones_fill_the_lightest() {
        let f = files(&[("a", 10), ("b", 10), ("c", 10), ("new", 10)]);
        let previous: BTreeMap<String, String> =
            [("a", "http://w1"), ("b", "http://w1"), ("c", "http://w0")]
                .into_iter()
                .map(|(f, w)| (f.to_string(), w.to_string()))
                .collect();
        let got = assign(&f, &previous, &workers(2), false);
        assert_eq!(got, vec![vec!["c", "new"], vec!["a", "b"]]);
    }

    #[test]
    fn a_lost_workers_files_move_to_the_others() {
        let f = files(&[("a", 10), ("b", 10), ("c", 10)]);
        let previous: BTreeMap<String, String> =
            [("a", "http://w0"), ("b", "http://gone"), ("c", "http://w1")]
                .into_iter()
                .map(|(f, w)| (f.to_string(), w.to_string()))
                .collect();
        let got = assign(&f, &previous, &workers(2), false);
        assert_eq!(got, vec![vec!["a", "b"], vec!["c"]]);
        assert_eq!(assign(&f, &previous, &[], false), Vec::<Vec<String>>::new());
    }

    #[test]
    fn a_returning_worker_takes_files_from_the_heaviest_when_rebalancing() {
        let f = files(&[("a", 40), ("b", 30), ("c", 20), ("d", 10)]);
        let previous: BTreeMap<String, String> = f
            .iter()
            .map(|(u, _)| (u.clone(), "http://w0".to_string()))
            .collect();
        // Without rebalancing, everything stays on w0.
        let stay = assign(&f, &previous, &workers(2), false);
        assert_eq!(stay[1], Vec::<String>::new());
        // With it: a (40) moves (gap 100: 60 / 40); then, with a gap of 20, c (20) would not
        // narrow it and d (10) does: 50 / 50.
        let got = assign(&f, &previous, &workers(2), true);
        assert_eq!(got, vec![vec!["b", "c"], vec!["a", "d"]]);
    }
}
