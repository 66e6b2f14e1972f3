// A failed plugin call, carrying the plugin's own error JSON so the kubelet
// sees the plugin's message rather than "exit status 1".
import type { CniErrorBody } from './cni-types';

export class CniPluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly body: CniErrorBody,
  ) {
    const details = body.details ? ` (${body.details})` : '';
    super(`CNI plugin ${plugin} ${command} failed: code ${body.code}: ${body.msg}${details}`);
    this.name = 'CniPluginError';
  }
}

/** Spec code for an unknown or missing container (DEL must treat as success). */
export const CNI_ERROR_UNKNOWN_CONTAINER = 3;
