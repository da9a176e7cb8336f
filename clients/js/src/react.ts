// `tidings/react`: hooks over one shared connection per provider.
//
// Components under one <TidingsProvider> share a single `Tidings` client: each hook adds its
// topics while mounted (changes made together reconnect once) and the connection closes when
// the last hook unmounts. Releases are deferred by one tick, so StrictMode's mount-unmount-mount
// keeps the one connection. Nothing connects during server rendering (effects do not run there).

import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useReducer,
  useRef,
  useState,
  type ReactNode,
} from "react";
import { Tidings, type Options, type ResetInfo, type State, type TidingsEvent } from "tidings";

/** The shared connection of one provider, counted by topic and by user. */
class Pool {
  #hub?: Tidings;
  #users = 0;
  #topics = new Map<string, number>();
  #timer?: ReturnType<typeof setTimeout>;

  constructor(readonly options: Omit<Options, "topics">) {}

  acquire(topics: string[]): Tidings {
    clearTimeout(this.#timer);
    for (const t of topics) this.#topics.set(t, (this.#topics.get(t) ?? 0) + 1);
    this.#users++;
    if (!this.#hub || this.#hub.state === "closed") {
      this.#hub = new Tidings({ ...this.options, topics: [...this.#topics.keys()] });
    } else {
      for (const t of topics) this.#hub.subscribe(t);
    }
    return this.#hub;
  }

  release(topics: string[]): void {
    for (const t of topics) this.#topics.set(t, (this.#topics.get(t) ?? 1) - 1);
    this.#users--;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      for (const [t, n] of this.#topics) {
        if (n <= 0) {
          this.#topics.delete(t);
          this.#hub?.unsubscribe(t);
        }
      }
      if (this.#users <= 0) {
        this.#hub?.close();
        this.#hub = undefined;
      }
    }, 0);
  }
}

const Context = createContext<Pool | null>(null);

/** Gives the hooks below it one shared connection to the hub at `url`. */
export function TidingsProvider(props: Omit<Options, "topics"> & { children?: ReactNode }) {
  const pool = useRef<Pool | null>(null);
  const { children, ...options } = props;
  if (!pool.current || pool.current.options.url !== options.url) pool.current = new Pool(options);
  return createElement(Context.Provider, { value: pool.current }, children);
}

function usePool(): Pool {
  const pool = useContext(Context);
  if (!pool) throw new Error("tidings/react: wrap the component in <TidingsProvider url=...>");
  return pool;
}

/** Uses the shared connection with `topics` while mounted; `listen` returns its cleanup. */
function useHub(topics: string[], listen: (hub: Tidings) => () => void, deps: unknown[]): void {
  const pool = usePool();
  useEffect(() => {
    const hub = pool.acquire(topics);
    const off = listen(hub);
    return () => {
      off();
      pool.release(topics);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [pool, topics.join("\n"), ...deps]);
}

/** Calls `handler` for every `event` on `topics` (the latest handler, without reconnecting). */
export function useTidingsEvent<T = unknown>(
  event: string,
  handler: (e: TidingsEvent<T>) => void,
  options: { topics?: string[] } = {},
): void {
  const latest = useRef(handler);
  latest.current = handler;
  useHub(options.topics ?? [], (hub) => hub.on<T>(event, (e) => latest.current(e)), [event]);
}

/** The shared connection's state: `connecting`, `open`, `waiting` or `closed`. */
export function useTidingsStatus(): State {
  const [state, setState] = useState<State>("connecting");
  useHub(
    [],
    (hub) => {
      setState(hub.state);
      return hub.on("state", setState);
    },
    [],
  );
  return state;
}

/**
 * State folded from every `event` on `topics` by `reduce` (each event is one reducer step, so
 * none is lost when React batches renders); `onReset` runs when the hub says events were missed.
 */
export function useEventStream<S, T = unknown>(
  topics: string[],
  options: {
    event?: string;
    reduce: (state: S, e: TidingsEvent<T>) => S;
    initial: S;
    onReset?: (info: ResetInfo) => void;
  },
): S {
  const reduceRef = useRef(options.reduce);
  reduceRef.current = options.reduce;
  const onReset = useRef(options.onReset);
  onReset.current = options.onReset;
  const [state, dispatch] = useReducer(
    (s: S, e: TidingsEvent<T>) => reduceRef.current(s, e),
    options.initial,
  );
  const event = options.event ?? "message";
  useHub(
    topics,
    (hub) => {
      const offEvent = hub.on<T>(event, dispatch);
      const offReset = hub.on("reset", (info) => onReset.current?.(info));
      return () => {
        offEvent();
        offReset();
      };
    },
    [event],
  );
  return state;
}
