/**
 * Public surface of the daemon package: start a daemon, stop it, resolve its configuration.
 * `bin/toondbd.ts` is a thin CLI over this module.
 */

export { Daemon, createLogger, INFO_FILE_NAME, type DaemonInfo } from './server.js';
export {
  resolveConfig,
  readConfigFile,
  defaultDataDir,
  defaultSocketPath,
  checkSocketPath,
  DEFAULT_SOCKET_PATH,
  LOG_LEVELS,
  type ConfigInput,
  type DaemonConfig,
  type LogLevel,
} from './config.js';
export { VERSION } from './version.js';
