import { type ReactNode } from "react";
import { Tidings, type Options, type ResetInfo, type State, type TidingsEvent } from "tidings";
/** The shared connection of one provider, counted by topic and by user. */
declare class Pool {
    #private;
    readonly options: Omit<Options, "topics">;
    constructor(options: Omit<Options, "topics">);
    acquire(topics: string[]): Tidings;
    release(topics: string[]): void;
}
/** Gives the hooks below it one shared connection to the hub at `url`. */
export declare function TidingsProvider(props: Omit<Options, "topics"> & {
    children?: ReactNode;
}): import("react").FunctionComponentElement<import("react").ProviderProps<Pool | null>>;
/** Calls `handler` for every `event` on `topics` (the latest handler, without reconnecting). */
export declare function useTidingsEvent<T = unknown>(event: string, handler: (e: TidingsEvent<T>) => void, options?: {
    topics?: string[];
}): void;
/** The shared connection's state: `connecting`, `open`, `waiting` or `closed`. */
export declare function useTidingsStatus(): State;
/**
 * State folded from every `event` on `topics` by `reduce` (each event is one reducer step, so
 * none is lost when React batches renders); `onReset` runs when the hub says events were missed.
 */
export declare function useEventStream<S, T = unknown>(topics: string[], options: {
    event?: string;
    reduce: (state: S, e: TidingsEvent<T>) => S;
    initial: S;
    onReset?: (info: ResetInfo) => void;
}): S;
export {};
