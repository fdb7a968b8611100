// Exit statuses of every `iacnas` command. The operator reads a trainer pod's exit code:
// EXIT_BAD_INPUT means retrying cannot help (the configuration or the data is wrong), so
// the search fails at once instead of spending its backoffLimit.
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_BAD_INPUT = 2;
