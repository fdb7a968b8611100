// Names both sides derive from a search: labels on its children, the headers of a
// progress POST, and the objects the operator creates for it.

/** Labels on every object the operator creates for a search. */
export const LABEL_SEARCH = 'iac.dev/search';
export const LABEL_PHASE = 'iac.dev/phase';
export const LABEL_ATTEMPT = 'iac.dev/attempt';
/** Label on every IACSearch an IACSearchSet created: the set's name. */
export const LABEL_SEARCH_SET = 'iac.dev/search-set';

/** Header of a progress POST naming its search as `<namespace>/<name>`. */
export const HEADER_SEARCH = 'x-iacsearch';
/** Header an operator replica sets on a progress POST it forwards to the leader (forwarded once, never again). */
export const HEADER_FORWARDED = 'x-iac-forwarded';

/** The Secret holding a search's progress token, under key PROGRESS_TOKEN_KEY. */
export const progressSecretName = (search: string) => `${search}-progress`;
export const PROGRESS_TOKEN_KEY = 'token';
/** The claim the operator creates for a search's artifacts when spec.artifacts.claimName is unset. */
export const defaultArtifactsClaimName = (search: string) => `${search}-artifacts`;
/** One pod per phase attempt. */
export const podName = (search: string, phase: string, attempt: number) => `${search}-${phase}-${attempt}`;
/** Where a phase pod writes its result (the container's terminationMessagePath). */
export const TERMINATION_MESSAGE_PATH = '/dev/termination-log';
