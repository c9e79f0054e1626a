/**
 * Elle-style checking of a transaction history built from list-append operations.
 *
 * Each transaction reads some keys and appends its own unique id to others (read the list,
 * write it back with the id added). Because every append is unique and lists only grow, the
 * final list of a key IS the version order of its committed writes, which makes dependencies
 * exact instead of guessed:
 *   ww  T1 -> T2   T2's append comes right after T1's in the final list
 *   wr  T1 -> T2   T2 read a list whose last element is T1
 *   rw  T1 -> T2   T1 read a list of length m and T2's append is at position m (T2 overwrote
 *                  the version T1 saw)
 * A serializable history has no cycle in this graph. Also checked: every read is a prefix of
 * the final list (no dirty or garbage reads) and no aborted transaction's id appears anywhere.
 */

export interface TxnRecord {
  id: string;
  committed: boolean;
  reads: Record<string, string[]>;
  appends: string[];
}

export interface HistoryReport {
  transactions: number;
  edges: number;
  cycles: string[][];
  anomalies: string[];
}

export function checkHistory(history: TxnRecord[], finalLists: Record<string, string[]>): HistoryReport {
  const committed = new Map(history.filter((t) => t.committed).map((t) => [t.id, t]));
  const aborted = new Set(history.filter((t) => !t.committed).map((t) => t.id));
  const anomalies: string[] = [];
  const graph = new Map<string, Set<string>>();
  const edge = (from: string, to: string) => {
    if (from === to) return;
    if (!graph.has(from)) graph.set(from, new Set());
    graph.get(from)!.add(to);
  };
  for (const [key, list] of Object.entries(finalLists)) {
    for (const id of list) if (aborted.has(id)) anomalies.push(`aborted ${id} visible in ${key}`);
    for (let i = 1; i < list.length; i++) edge(list[i - 1], list[i]);
  }
  for (const txn of committed.values()) {
    for (const [key, seen] of Object.entries(txn.reads)) {
      const list = finalLists[key] ?? [];
      const isPrefix = seen.length <= list.length && seen.every((id, i) => list[i] === id);
      if (!isPrefix) {
        anomalies.push(`${txn.id} read ${key}=[${seen}] which is not a prefix of [${list}]`);
        continue;
      }
      if (seen.length > 0) edge(seen[seen.length - 1], txn.id);
      const overwriter = list[seen.length];
      if (overwriter !== undefined) edge(txn.id, overwriter);
    }
  }
  let edges = 0;
  for (const targets of graph.values()) edges += targets.size;
  return { transactions: committed.size, edges, cycles: findCycles(graph), anomalies };
}

/** Tarjan's strongly connected components; every component with more than one node is a cycle. */
function findCycles(graph: Map<string, Set<string>>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const nodes = new Set<string>([...graph.keys(), ...[...graph.values()].flatMap((s) => [...s])]);
  // Iterative DFS so a long history cannot overflow the stack.
  for (const root of nodes) {
    if (indices.has(root)) continue;
    const work: [string, Iterator<string>][] = [];
    const visit = (node: string) => {
      indices.set(node, index);
      low.set(node, index);
      index++;
      stack.push(node);
      onStack.add(node);
      work.push([node, (graph.get(node) ?? new Set<string>()).values()]);
    };
    visit(root);
    while (work.length > 0) {
      const [node, successors] = work[work.length - 1];
      const next = successors.next();
      if (!next.done) {
        const succ = next.value;
        if (!indices.has(succ)) visit(succ);
        else if (onStack.has(succ)) low.set(node, Math.min(low.get(node)!, indices.get(succ)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent)!, low.get(node)!));
      }
      if (low.get(node) === indices.get(node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== node);
        if (component.length > 1) cycles.push(component);
      }
    }
  }
  return cycles;
}
