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
  checkPathText,
  DEFAULT_SOCKET_PATH,
  DATA_DIR_NAME,
  DATA_HOME_FALLBACK,
  DURABILITY_DEFAULT,
  DURABILITY_MODES,
  LOG_LEVEL_DEFAULT,
  LOG_LEVELS,
  type ConfigInput,
  type DaemonConfig,
  type LogLevel,
} from './config.js';
export { VERSION } from './version.js';
