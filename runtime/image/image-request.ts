// Checks the image RPCs' requests, naming the field that is wrong, and turns
// them into what the model takes. The shim calls these and maps their errors;
// nothing else validates an image request.
import type { AuthConfig__Output } from '../../cri-proto/generated/runtime/v1/AuthConfig';
import type { ImageFilter__Output } from '../../cri-proto/generated/runtime/v1/ImageFilter';
import type { ImageSpec__Output } from '../../cri-proto/generated/runtime/v1/ImageSpec';
import type { PullImageRequest__Output } from '../../cri-proto/generated/runtime/v1/PullImageRequest';
import { invalidArgument } from '../errors';
import { parseImageReference, type ImageReference } from './image-reference';
import type { RegistryCredentials } from './registry-auth';

export interface PullRequest {
  image: ImageReference;
  credentials: RegistryCredentials | undefined;
}

/** The image a request names (id, id prefix, tag, digest or short name), trimmed; INVALID_ARGUMENT when empty. */
export function requiredImage(spec: ImageSpec__Output | null | undefined, field = 'image.image'): string {
  const image = spec?.image?.trim() ?? '';
  if (!image) throw invalidArgument(`${field} is required`);
  return image;
}

/** ListImages' and StreamImages' filter: the image it names, or undefined for every image. */
export function imageFilterOf(filter: ImageFilter__Output | null | undefined): string | undefined {
  return filter?.image?.image?.trim() || undefined;
}

/** PullImage: a reference that parses, and the credentials the AuthConfig carries (checked when a registry asks for them). */
export function validatePullRequest(request: PullImageRequest__Output): PullRequest {
  return { image: parseImageReference(requiredImage(request.image)), credentials: credentialsOf(request.auth) };
}

function credentialsOf(auth: AuthConfig__Output | null | undefined): RegistryCredentials | undefined {
  if (!auth) return undefined;
  const creds: RegistryCredentials = {
    ...(auth.username ? { username: auth.username, password: auth.password ?? '' } : {}),
    ...(auth.auth ? { auth: auth.auth } : {}),
    ...(auth.identity_token ? { identityToken: auth.identity_token } : {}),
    ...(auth.registry_token ? { registryToken: auth.registry_token } : {}),
    ...(auth.server_address ? { serverAddress: auth.server_address } : {}),
  };
  return Object.keys(creds).length > 0 ? creds : undefined;
}
