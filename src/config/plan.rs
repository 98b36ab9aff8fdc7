//! The plan of an aggregate route: which backend waits for whose answer. Built once by
//! `validate` (which refuses a cycle) and carried by the compiled route; the aggregate's
//! `execute` stage follows it per request. Backends that wait for nothing start
//! together; every other one starts the moment the last answer it reads arrives, never
//! when a whole "wave" of calls has finished.

/// The dependency graph of one route's backends, by index in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// For each backend, how many answers it waits for.
    waits: Vec<usize>,
    /// For each backend, the backends that read its answer.
    readers: Vec<Vec<usize>>,
}

impl Plan {
    /// Builds the plan from what each backend waits for. A cycle is refused: the error
    /// lists it in order, its first backend repeated at the end (`[a, b, a]`).
    pub fn new(waits_for: &[Vec<usize>]) -> Result<Self, Vec<usize>> {
        let n = waits_for.len();
        let mut readers = vec![Vec::new(); n];
        for (reader, deps) in waits_for.iter().enumerate() {
            for &dep in deps {
                readers[dep].push(reader);
            }
        }
        if let Some(cycle) = find_cycle(waits_for) {
            return Err(cycle);
        }
        Ok(Self {
            waits: waits_for.iter().map(Vec::len).collect(),
            readers,
        })
    }

    /// The backends that start at once.
    pub fn starts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.waits.len()).filter(|&i| self.waits[i] == 0)
    }

    /// How many answers each backend waits for: a request's countdown.
    pub fn waits(&self) -> &[usize] {
        &self.waits
    }

    /// The backends that read backend `i`'s answer.
    pub fn readers(&self, i: usize) -> &[usize] {
        &self.readers[i]
    }

    /// Whether any backend reads backend `i`'s answer, so it must be kept (unshaped).
    pub fn is_read(&self, i: usize) -> bool {
        !self.readers[i].is_empty()
    }

    /// Whether any backend waits for another.
    pub fn has_dependencies(&self) -> bool {
        self.waits.iter().any(|&w| w > 0)
    }
}

/// A depth-first search that reports the first cycle met.
fn find_cycle(waits_for: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(i: usize, g: &[Vec<usize>], marks: &mut [Mark], path: &mut Vec<usize>) -> bool {
        marks[i] = Mark::OnPath;
        path.push(i);
        for &dep in &g[i] {
            let mark = marks[dep];
            match mark {
                Mark::OnPath => {
                    let from = path.iter().position(|&p| p == dep).expect("on the path");
                    path.drain(..from);
                    path.push(dep);
                    return true;
                }
                Mark::New if visit(dep, g, marks, path) => return true,
                _ => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        false
    }
    let mut marks = vec![Mark::New; waits_for.len()];
    let mut path = Vec::new();
    for i in 0..waits_for.len() {
        if marks[i] == Mark::New && visit(i, waits_for, &mut marks, &mut path) {
            // The search follows "waits for" edges; the cycle reads better in call order.
            path.reverse();
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_backends_all_start() {
        let plan = Plan::new(&[vec![], vec![], vec![]]).unwrap();
        assert_eq!(plan.starts().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(!plan.has_dependencies());
        assert!(!plan.is_read(0));
    }

    #[test]
    fn a_chain_and_a_diamond() {
        // 0 → 2, 1 → 2, 2 → 3, 0 → 3
        let plan = Plan::new(&[vec![], vec![], vec![0, 1], vec![2, 0]]).unwrap();
        assert_eq!(plan.starts().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(plan.waits(), &[0, 0, 2, 2]);
        assert_eq!(plan.readers(0), &[2, 3]);
        assert_eq!(plan.readers(2), &[3]);
        assert!(plan.is_read(1));
        assert!(!plan.is_read(3));
        assert!(plan.has_dependencies());
    }

    #[test]
    fn cycles_are_refused_in_call_order() {
        // 0 waits for 2, 2 waits for 1, 1 waits for 0: calls would go 0 → 1 → 2 → 0.
        assert_eq!(
            Plan::new(&[vec![2], vec![0], vec![1]]),
            Err(vec![0, 1, 2, 0])
        );
        assert_eq!(Plan::new(&[vec![], vec![1]]), Err(vec![1, 1]));
        // A cycle downstream of a healthy backend.
        assert_eq!(
            Plan::new(&[vec![], vec![0, 2], vec![1]]),
            Err(vec![1, 2, 1])
        );
    }

    #[test]
    fn validate_builds_the_plan_the_compiled_route_carries() {
        use crate::config::{AggregateSpec, Env, RouteKind, compile};
        let toml = r#"
[upstreams.u]
url = "http://127.0.0.1:9"

[[routes]]
path = "/r"
  [[routes.backends]]
  name = "a"
  upstream = "u"
  path = "/a"
  [[routes.backends]]
  name = "b"
  upstream = "u"
  path = "/b/{a.id}"
"#;
        let compiled = compile(toml, &Env::default()).unwrap();
        let RouteKind::Aggregate(AggregateSpec { backends, plan, .. }) = &compiled.routes[0].kind
        else {
            panic!("an aggregate route");
        };
        assert_eq!(backends.len(), 2);
        assert_eq!(*plan, Plan::new(&[vec![], vec![0]]).unwrap());
    }
}
