package smp

import "context"

// Echo asks the device to echo s back (OS group, command 0).
func (c *Client) Echo(ctx context.Context, s string) (string, error) {
	var r EchoResponse
	err := c.Do(ctx, OpWrite, GroupOS, CmdEcho, EchoRequest{D: s}, &r)
	return r.R, err
}

// Reset asks the device to reset (OS group, command 5). The device
// answers before it resets. The request is sent once: sent again after a
// lost answer, it could reset the device a second time, which reverts an
// image on test. An error wrapping ErrNoResponse therefore leaves open
// whether the device reset.
func (c *Client) Reset(ctx context.Context) error {
	return c.do(ctx, 0, OpWrite, GroupOS, CmdReset, ResetRequest{}, nil)
}

// Params reads the device's SMP buffer size and count (OS group,
// command 6).
func (c *Client) Params(ctx context.Context) (ParamsResponse, error) {
	var r ParamsResponse
	err := c.Do(ctx, OpRead, GroupOS, CmdParams, nil, &r)
	return r, err
}

// ImageState reads the state of the device's images (image group,
// command 0).
func (c *Client) ImageState(ctx context.Context) ([]ImageInfo, error) {
	var r ImageStateResponse
	err := c.Do(ctx, OpRead, GroupImage, CmdImageState, nil, &r)
	return r.Images, err
}

// ImageTest marks the image with hash, in the secondary slot, for one
// test boot.
func (c *Client) ImageTest(ctx context.Context, hash []byte) ([]ImageInfo, error) {
	var r ImageStateResponse
	err := c.Do(ctx, OpWrite, GroupImage, CmdImageState, ImageStateRequest{Hash: hash}, &r)
	return r.Images, err
}

// ImageConfirm makes the running image permanent.
func (c *Client) ImageConfirm(ctx context.Context) ([]ImageInfo, error) {
	var r ImageStateResponse
	err := c.Do(ctx, OpWrite, GroupImage, CmdImageState, ImageStateRequest{Confirm: true}, &r)
	return r.Images, err
}

// ImageErase erases the secondary slot (image group, command 5).
func (c *Client) ImageErase(ctx context.Context) error {
	return c.Do(ctx, OpWrite, GroupImage, CmdImageErase, EraseRequest{}, nil)
}

// SlotInfo reads the sizes of the device's slots (image group, command 6).
func (c *Client) SlotInfo(ctx context.Context) ([]SlotInfoImage, error) {
	var r SlotInfoResponse
	err := c.Do(ctx, OpRead, GroupImage, CmdSlotInfo, nil, &r)
	return r.Images, err
}
