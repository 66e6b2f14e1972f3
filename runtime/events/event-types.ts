// Container lifecycle events, published by the container model and served by
// GetContainerEvents. Owned by runtime/events/.

export type ContainerEventType =
  | 'CONTAINER_CREATED_EVENT'
  | 'CONTAINER_STARTED_EVENT'
  | 'CONTAINER_STOPPED_EVENT'
  | 'CONTAINER_DELETED_EVENT';

export interface ContainerLifecycleEvent {
  type: ContainerEventType;
  containerId: string;
  podSandboxId: string;
  /** Unix nanoseconds as a decimal string. */
  createdAt: string;
}

/** Where the container model publishes; never blocks the caller. */
export interface ContainerEventPublisher {
  publish(event: ContainerLifecycleEvent): void;
}
